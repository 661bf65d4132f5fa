"""Options of the ``ssh`` executor: the profile keys, their defaults and their validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from corral.errors import ConfigError
from corral.transport.ssh import DEFAULT_KNOWN_HOSTS, check_options
from corral.transport.staging import CLEANUP_CHOICES


@dataclass(frozen=True)
class SSHExecutorSettings:
    """Options of an ``ssh`` executor profile."""

    hosts: tuple[str, ...]
    """Host URLs ``ssh://user@host:port`` (or ``user@host``); query options override the rest."""
    slots_per_host: int | None = None
    """Attempts (cores) run at once on each host; default: the host's CPU count."""
    python: str = "python3"
    """Remote interpreter that can ``import corral``."""
    remote_workdir: str = "~/.corral/remote"
    """Root of staged attempt directories (``~`` is the remote home); unused when shared."""
    shared_filesystem: bool = False
    """Whether hosts see the local work and pipeline directories at the same paths."""
    identity_file: str | None = None
    known_hosts: str | None = DEFAULT_KNOWN_HOSTS
    """known_hosts file; ``None`` (or ``"none"``) disables host key checking: tests only."""
    connect_timeout: float = 15.0
    poll_interval: float = 2.0
    """Longest interval between two status checks of a host."""
    kill_grace: float = 5.0
    """Seconds between SIGTERM and SIGKILL when cancelling or enforcing a walltime."""
    host_timeout: float = 300.0
    """A host unreachable this long has its attempts reported ``NODE_FAILURE``."""
    remote_cleanup: str = "succeeded"
    """Which staged attempt directories are removed once fetched back: ``succeeded`` (failed ones
    are kept for inspection), ``all`` or ``none``."""


_SETTING_NAMES = tuple(f.name for f in fields(SSHExecutorSettings))


def _positive(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    if not ok or (kind is int and not isinstance(value, int)):
        what = "a positive integer" if kind is int else "a positive number"
        raise ConfigError(f"ssh executor option {name}={value!r} must be {what}")
    return kind(value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"ssh executor option {name}={value!r} must be a non-empty string")
    return value


def parse_settings(options: Mapping[str, Any]) -> SSHExecutorSettings:
    """Validate profile options into :class:`SSHExecutorSettings` (unknown keys: ConfigError)."""
    unknown = sorted(set(options) - set(_SETTING_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown ssh executor option(s) {', '.join(unknown)}; valid options are {', '.join(_SETTING_NAMES)}"
        )
    hosts = options.get("hosts")
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list | tuple) or not hosts:
        raise ConfigError('the ssh executor needs hosts = ["ssh://user@host:22", ...]')
    values: dict[str, Any] = {"hosts": tuple(_string("hosts", h) for h in hosts)}
    connection = ("identity_file", "known_hosts", "shared_filesystem")
    values.update(check_options({k: options[k] for k in connection if k in options}))
    for name in ("python", "remote_workdir", "remote_cleanup"):
        if name in options:
            values[name] = _string(name, options[name])
    if values.get("remote_cleanup", "succeeded") not in CLEANUP_CHOICES:
        raise ConfigError(f"ssh executor option remote_cleanup={values['remote_cleanup']!r} "
                          f"is not one of {', '.join(CLEANUP_CHOICES)}")
    if options.get("slots_per_host") is not None:
        values["slots_per_host"] = _positive("slots_per_host", options["slots_per_host"], int)
    for name in ("connect_timeout", "poll_interval", "kill_grace", "host_timeout"):
        if name in options:
            values[name] = _positive(name, options[name], float)
    return SSHExecutorSettings(**values)
