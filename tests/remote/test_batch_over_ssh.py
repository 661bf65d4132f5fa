"""A batch executor (SLURM) driven through SSHTransport: scheduler commands, scripts, markers and
results all cross SSH/SFTP to the loopback sshd, as from a laptop to a login node."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator

import pytest
from conftest import SSHRig
from remote_helpers import Recorder, Workspace, boom, python_payload, square, wait_all

from corral.executors import executor_class
from corral.executors.base import Outcome
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.settings import parse_settings
from corral.transport.ssh import SSHTransport

pytestmark = [pytest.mark.ssh, pytest.mark.slurm]


@pytest.fixture
def slurm_over_ssh(ssh_rig: SSHRig, workspace: Workspace) -> Iterator[BatchExecutor]:
    transport = SSHTransport.from_url(ssh_rig.url, {**ssh_rig.options, "shared_filesystem": True})
    probe = transport.run(["sinfo", "-h"], check=False, timeout=20)
    if probe.returncode != 0:
        transport.close()
        reason = f"sinfo over ssh failed: {probe.stderr.strip()[-200:]}"
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"slurm required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
        pytest.skip(reason)
    cls = executor_class("slurm")
    assert issubclass(cls, BatchExecutor)
    fast = {"poll_interval": 0.2, "max_poll_interval": 1.0, "marker_interval": 0.1}
    ctx = workspace.context()
    ctx.python = sys.executable
    executor = cls(parse_settings(cls.settings_class, fast, "slurm"), ctx, transport)
    yield executor
    executor.shutdown()
    transport.close()


def test_slurm_through_ssh_transport(slurm_over_ssh: BatchExecutor, workspace: Workspace, recorder: Recorder) -> None:
    slurm_over_ssh.start(recorder)
    specs = [workspace.spec(python_payload(square, i), name="square") for i in range(3)]
    bad = workspace.spec(python_payload(boom, "over ssh"))
    slurm_over_ssh.submit([*specs, bad])
    done = wait_all(slurm_over_ssh, {s.attempt_id for s in [*specs, bad]}, timeout=90)
    for i, spec in enumerate(specs):
        c = done[spec.attempt_id]
        assert c.outcome is Outcome.SUCCEEDED, c.error
        assert pickle.loads(c.result or b"") == i * i
    assert done[bad.attempt_id].outcome is Outcome.FAILED
    assert "ValueError: over ssh" in (done[bad.attempt_id].error or "")
    assert all(recorder.submitted_ids[s.attempt_id] for s in specs)
