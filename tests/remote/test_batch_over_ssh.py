"""A batch executor (SLURM) driven through SSHTransport: scheduler commands, scripts, markers and
results all cross SSH/SFTP to the loopback sshd, as from a laptop to a login node."""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from remote_helpers import Recorder, Workspace, boom, python_payload, square, wait_all

from conftest import SSHRig
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


def test_profile_with_ssh_transport_runs_a_pipeline(ssh_rig: SSHRig, tmp_path: Path) -> None:
    """`transport = "ssh://..."` in an executor profile: a whole pipeline runs through it."""
    import corral
    from corral.config import load_config

    options = ", ".join(f'{k} = "{v}"' for k, v in ssh_rig.options.items() if v is not None)
    (tmp_path / "corral.toml").write_text(
        "[executors.login]\n"
        'kind = "slurm"\n'
        f'transport = "{ssh_rig.url}"\n'
        "poll_interval = 0.2\nmax_poll_interval = 1.0\nmarker_interval = 0.1\n"
        f"transport_options = {{ {options} }}\n"
    )
    (tmp_path / "pipe.py").write_text(
        "from corral import task, pipeline\n"
        "@task\ndef sq(x: int) -> int:\n    return x * x\n"
        "@task\ndef total(xs: list) -> int:\n    return sum(xs)\n"
        "@pipeline\ndef p(n: int = 4):\n    return total(sq.map(x=range(n)))\n"
    )
    kind, opts = load_config(tmp_path).executor("login")
    pipe = corral.load_pipeline(tmp_path / "pipe.py")
    result = corral.run(pipe, {"n": 4}, executor=kind, executor_options=opts, jobs=10,
                        workdir=tmp_path)
    assert result.ok, result.errors
    assert result.value == 14
    attempts = corral.Client(tmp_path).run(result.run_id).attempts()
    assert attempts and all(a["native_id"] for a in attempts)


def test_a_large_value_goes_between_tasks_by_reference(ssh_rig: SSHRig, tmp_path: Path) -> None:
    """SLURM through an ssh transport (no shared file system): a value over the inline limit
    reaches the next task as a file sent to the login node's content cache, named in the
    payload by reference, not written into the payload itself."""
    import corral

    options = {"transport": ssh_rig.url, "transport_options": {
        **{k: v for k, v in ssh_rig.options.items() if v is not None}, "shared_filesystem": False},
        "poll_interval": 0.2, "max_poll_interval": 1.0, "marker_interval": 0.1,
        "remote_workdir": str(tmp_path / "remote")}
    (tmp_path / "pipe.py").write_text(
        "from corral import task, pipeline\n"
        "@task\ndef big(n: int) -> str:\n    return 'x' * n\n"
        "@task\ndef size(s: str) -> int:\n    return len(s)\n"
        "@pipeline\ndef p(n: int = 1):\n    return size(big(n))\n"
    )
    pipe = corral.load_pipeline(tmp_path / "pipe.py")
    n = 3 * 2**20  # far over the 64 KiB inline limit
    result = corral.run(pipe, {"n": n}, executor="slurm", executor_options=options, jobs=4,
                        workdir=tmp_path)
    assert result.ok, result.errors
    assert result.value == n
    cached = [f for f in (tmp_path / "remote").rglob(".corral-cache/*/*") if f.is_file()]
    assert any(f.stat().st_size > n for f in cached), cached  # the value went as a file


def test_profile_transport_errors_are_one_line(tmp_path: Path) -> None:
    from corral.errors import ConfigError
    from corral.executors import create_executor
    from corral.executors.base import ExecutorContext

    ctx = ExecutorContext("r", tmp_path, tmp_path, 1, sys.executable)
    with pytest.raises(ConfigError, match="not supported"):
        create_executor("slurm", {"transport": "ftp://x"}, ctx)
    with pytest.raises(ConfigError, match="no transport"):
        create_executor("slurm", {"transport_options": {"identity_file": "k"}}, ctx)
