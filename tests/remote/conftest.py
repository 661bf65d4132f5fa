"""Fixtures of the remote executor tests (ssh, dask): a real sshd on loopback, hand-built specs.

The sshd comes from ``scripts/rig/start-sshd.sh``: ``CORRAL_TEST_SSH_KEY`` (private key) and
``CORRAL_TEST_SSH_PORT`` from the environment, else from ``/run/corral-rig/env``; optional
``CORRAL_TEST_SSH_USER`` (default: the current user) and ``CORRAL_TEST_SSH_KNOWN_HOSTS`` (without
it host keys are not checked: ``known_hosts=None``, set explicitly). Without a reachable sshd the
ssh tests are skipped, unless ``CORRAL_REQUIRE_CLUSTERS=1`` (then they fail). Only 127.0.0.1 is
ever used.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import Recorder, Workspace, new_workspace

from corral.errors import CorralError
from corral.transport.ssh import SSHTransport

RIG_ENV = Path("/run/corral-rig/env")
LOOPBACK = "127.0.0.1"


def _rig_env() -> dict[str, str]:
    """Variables of the rig's env file (``KEY=VALUE`` lines, optional ``export`` and quotes)."""
    values: dict[str, str] = {}
    try:
        lines = RIG_ENV.read_text().splitlines()
    except OSError:
        return values
    for raw in lines:
        line = raw.strip().removeprefix("export ").strip()
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


@dataclass(frozen=True)
class SSHRig:
    """How to reach the test sshd."""

    key: str
    port: int
    user: str
    known_hosts: str | None = None
    """The rig's known_hosts file; without one, checking is disabled explicitly (tests only)."""

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{LOOPBACK}:{self.port}"

    @property
    def options(self) -> dict[str, Any]:
        return {"identity_file": self.key, "known_hosts": self.known_hosts}


def _unavailable(reason: str) -> None:
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"sshd required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"no test sshd: {reason}; start one with scripts/rig/start-sshd.sh")


def _find_rig() -> SSHRig:
    rig_file = _rig_env()
    key = os.environ.get("CORRAL_TEST_SSH_KEY") or rig_file.get("CORRAL_TEST_SSH_KEY")
    port = os.environ.get("CORRAL_TEST_SSH_PORT") or rig_file.get("CORRAL_TEST_SSH_PORT")
    user = os.environ.get("CORRAL_TEST_SSH_USER") or rig_file.get("CORRAL_TEST_SSH_USER") or getpass.getuser()
    known_hosts = os.environ.get("CORRAL_TEST_SSH_KNOWN_HOSTS") or rig_file.get("CORRAL_TEST_SSH_KNOWN_HOSTS")
    if not key or not port:
        _unavailable(f"CORRAL_TEST_SSH_KEY/CORRAL_TEST_SSH_PORT are not set (nor in {RIG_ENV})")
    assert key is not None and port is not None
    if not Path(key).is_file():
        _unavailable(f"the key file {key} does not exist")
    try:
        with socket.create_connection((LOOPBACK, int(port)), timeout=3):
            pass
    except (OSError, ValueError) as exc:
        _unavailable(f"nothing listens on {LOOPBACK}:{port} ({exc})")
    if known_hosts and not Path(known_hosts).is_file():
        known_hosts = None
    return SSHRig(key, int(port), user, known_hosts)


@pytest.fixture(scope="session")
def ssh_rig() -> SSHRig:
    """The loopback sshd, checked once per session (connect, run ``true``)."""
    rig = _find_rig()
    transport = SSHTransport.from_url(rig.url, rig.options)
    try:
        transport.run(["true"], timeout=20)
    except CorralError as exc:
        _unavailable(f"ssh {rig.url} failed: {exc}")
    finally:
        transport.close()
    return rig


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return new_workspace(tmp_path)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
