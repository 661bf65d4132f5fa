"""An HPC system of kind ``ssh``: a command job submitted over /api/v1 runs on the rig's sshd (on
loopback) through Corral's ssh executor, staged to a remote work directory and its output fetched
back. Skipped without the rig's CORRAL_TEST_SSH_* variables (source /run/corral-rig/env) or an
sshd listening there; with CORRAL_REQUIRE_CLUSTERS=1 it fails instead."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.gateway.store import GatewayStore

LOOPBACK = "127.0.0.1"


def _rig() -> dict[str, str]:
    """The rig's sshd: user, port, key and known_hosts, or a skip naming what is missing."""
    names = ["CORRAL_TEST_SSH_PORT", "CORRAL_TEST_SSH_USER", "CORRAL_TEST_SSH_KEY", "CORRAL_TEST_SSH_KNOWN_HOSTS"]
    found = {name: os.environ.get(name, "") for name in names}
    missing = [name for name, value in found.items() if not value]
    reason = f"{', '.join(missing)} not set (source /run/corral-rig/env)" if missing else None
    if reason is None:
        try:
            with socket.create_connection((LOOPBACK, int(found["CORRAL_TEST_SSH_PORT"])), timeout=3):
                pass
        except (OSError, ValueError) as exc:
            reason = f"nothing listens on {LOOPBACK}:{found['CORRAL_TEST_SSH_PORT']} ({exc})"
    if reason is not None:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"sshd required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
        pytest.skip(f"no test sshd: {reason}")
    return found


@pytest.fixture
def systems_toml(tmp_path: Path) -> str:
    rig = _rig()
    options = {
        "hosts": [f"ssh://{rig['CORRAL_TEST_SSH_USER']}@{LOOPBACK}:{rig['CORRAL_TEST_SSH_PORT']}"],
        "python": sys.executable, "identity_file": rig["CORRAL_TEST_SSH_KEY"],
        "known_hosts": rig["CORRAL_TEST_SSH_KNOWN_HOSTS"], "remote_workdir": str(tmp_path / "remote"),
        "poll_interval": 0.3, "kill_grace": 1.0,
    }
    lines = [f"{key} = {json.dumps(value)}" for key, value in options.items()]
    return "\n".join(["[systems.remote]", 'executor = "ssh"', "max_cores_per_node = 2", "max_walltime_hours = 1",
                      "[systems.remote.options]", *lines, ""])


def _until_ended(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["terminal_stage"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_command_job_runs_over_ssh(server: str, store: GatewayStore, tmp_path: Path) -> None:
    store.create_project("far", 10.0, members=["alice"], system="remote")
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        [system] = client.get("/api/v1/systems").json()
        assert (system["name"], system["kind"]) == ("remote", "ssh")
        ok = client.post("/api/v1/jobs", json={"command": "sh -c 'echo via ssh ${SSH_CONNECTION:+yes}; pwd'",
                                               "walltime_hours": 0.1, "title": "remote $(id)"})
        bad = client.post("/api/v1/jobs", json={"command": "sh -c 'echo no >&2; exit 4'", "walltime_hours": 0.1})
        done, failed = (_until_ended(client, r.json()["id"]) for r in (ok, bad))
        assert done["state"] == "completed", client.get(f"/api/v1/jobs/{done['id']}/history").json()
        stdout = client.get(f"/api/v1/jobs/{done['id']}/logs/stdout").text.splitlines()
        assert (failed["state"], failed["exit_code"]) == ("failed", 4)
        assert client.get(f"/api/v1/jobs/{failed['id']}/logs/stderr").text == "no\n"
        project = client.get("/api/v1/projects/far").json()
    assert stdout[0] == "via ssh yes"  # a shell that sshd started (SSH_CONNECTION is set)
    assert stdout[1].startswith(str(tmp_path / "remote")), stdout  # in the staged remote directory
    assert done["native_id"] and done["exit_code"] == 0
    assert project["active_jobs"] == 0 and project["reserved_core_hours"] == 0
    assert 0 < project["charged_core_hours"] < 0.01
