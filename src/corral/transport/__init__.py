"""Transports: where scheduler commands run and how files reach the work directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from corral.errors import ConfigError
from corral.optional import require
from corral.transport.base import Transport


def transport_from_profile(url: str | None, options: Mapping[str, Any] | None) -> Transport | None:
    """The transport a profile asks for: ``None`` (run commands here) or ``ssh://...``.

    ``options`` are the SSH settings (``identity_file``, ``known_hosts``, ``shared_filesystem``,
    ``connect_timeout`` ...); the URL's query string overrides them.
    """
    if url is None or url in ("", "local"):
        if options:
            raise ConfigError("transport_options are given but no transport; "
                              "add transport = \"ssh://user@host\" to the profile")
        return None
    if not isinstance(url, str) or not url.startswith("ssh://"):
        raise ConfigError(f"transport = {url!r} is not supported; write transport = \"ssh://user@host[:port]\"")
    ssh = require("corral.transport.ssh", f"transport {url!r}", "ssh")
    # the batch executors read and write the work directory at local paths: it must be shared
    transport: Transport = ssh.SSHTransport.from_url(url, {"shared_filesystem": True, **dict(options or {})})
    return transport
