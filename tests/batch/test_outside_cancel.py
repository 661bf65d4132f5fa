"""A job cancelled outside Corral (scancel, qdel, bkill) is a fault, never a "succeeded" run:
the task ends `cancelled` with the job named, its dependents `skipped`, the run `failed` with
exit status 1 (and `--watch` exits 1), and the same command again resumes the run and reruns
only what did not finish. Real SLURM and Grid Engine, fake PBS and LSF, and the ssh executor
through the rig's sshd (its worker's process group killed with SIGKILL on the host)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

PIPE = '''
from corral import pipeline, shell

@pipeline
def c():
    a = shell("if [ -e hold ]; then sleep 60; fi; echo a > {output}", outputs="a.txt", name="slow")
    return shell("cat {input} > {output}", inputs=a, outputs="b.txt", name="after")
'''

PROFILE = '''
[executors.fast]
kind = "{kind}"
poll_interval = 0.3
max_poll_interval = 1.0
marker_interval = 0.2
kill_grace = 0.5
'''

SSH_PROFILE = '''
[executors.fast]
kind = "ssh"
hosts = ["ssh://{user}@127.0.0.1:{port}"]
python = "{python}"
identity_file = "{key}"
known_hosts = "{known_hosts}"
shared_filesystem = true
poll_interval = 0.3
kill_grace = 0.5
'''

CANCEL = {"slurm": ["scancel"], "sge": ["qdel"], "pbs": ["qdel"], "lsf": ["bkill"]}
KINDS = [pytest.param("slurm", marks=pytest.mark.slurm), pytest.param("sge", marks=pytest.mark.sge),
         "pbs", "lsf", pytest.param("ssh", marks=pytest.mark.ssh), "local", "dask"]
LOCAL_KINDS = ("local", "dask")
"""The command's process killed with SIGKILL (no scheduler to cancel a job): the task fails."""


def _profile(kind: str, harness_for: Callable[[str], Any]) -> str:
    if kind in LOCAL_KINDS:
        return PROFILE.replace("{kind}", kind).split("poll_interval")[0]
    if kind != "ssh":
        harness_for(kind)  # the real cluster (or skip/fail), or the fake scheduler on PATH
        return PROFILE.replace("{kind}", kind)
    env = {k: os.environ.get(f"CORRAL_TEST_SSH_{k.upper()}") for k in ("port", "user", "key", "known_hosts")}
    if not all(env.values()):
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail("the rig's sshd is required (CORRAL_REQUIRE_CLUSTERS=1); run scripts/rig/up.sh")
        pytest.skip("no test sshd; start one with scripts/rig/start-sshd.sh")
    return SSH_PROFILE.format(python=sys.executable, **env)


def _cancel_outside(kind: str, native: str, cwd: Path) -> str:
    """Cancel the job (or kill the ssh worker's process group, or locally the command's
    `sleep`); returns the id the user sees."""
    if kind in LOCAL_KINDS:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for proc in psutil.process_iter(["cmdline", "cwd"]):
                if proc.info["cmdline"] == ["sleep", "60"] and proc.info["cwd"] == str(cwd):
                    proc.kill()
                    return ""
            time.sleep(0.1)
        raise AssertionError("the task's sleep never started")
    if kind == "ssh":  # user@host:port:pid, on loopback: the pid is ours
        os.killpg(int(native.rpartition(":")[2]), signal.SIGKILL)
        return native
    job = native.split(".")[0]
    subprocess.run([*CANCEL[kind], job], check=True, capture_output=True, timeout=30)  # noqa: S603
    return job


def _corral(cwd: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "corral.cli.app", *args]
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # noqa: S603
                            text=True, start_new_session=True, env={**os.environ, "COLUMNS": "200"})


def _native_id_of(db: Path, task: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db, timeout=10) as conn:
                row = conn.execute(
                    "SELECT a.native_id FROM attempts a JOIN tasks t ON a.task_id = t.id "
                    "WHERE t.name = ? AND a.native_id IS NOT NULL AND a.started_at IS NOT NULL", (task,)
                ).fetchone()
        except sqlite3.OperationalError:
            row = None
        if row:
            return str(row[0])
        time.sleep(0.2)
    raise AssertionError(f"task {task} did not start within {timeout} s")


@pytest.mark.parametrize("kind", KINDS)
def test_job_cancelled_outside_fails_the_run_and_resumes(
    kind: str, tmp_path: Path, harness_for: Callable[[str], Any]
) -> None:
    (tmp_path / "c.py").write_text(PIPE)
    (tmp_path / "corral.toml").write_text(_profile(kind, harness_for))
    (tmp_path / "hold").touch()
    run = _corral(tmp_path, "run", "c.py", "-e", "fast", "-q")
    try:
        native = _native_id_of(tmp_path / ".corral" / "state.db", "slow") if kind not in LOCAL_KINDS else ""
        native = _cancel_outside(kind, native, tmp_path)
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 1, (out, err)
    expected = "failed" if kind in LOCAL_KINDS else "cancelled"
    # locally the command dies of SIGKILL (bash says "Killed", or its exit status is 137)
    reason = "slow: failed: " if kind in LOCAL_KINDS else "cancelled outside Corral"
    assert reason in err and native in err, err
    assert kind not in LOCAL_KINDS or "Killed" in err or "137" in err, err
    assert "Traceback" not in err and "succeeded" not in err, err
    assert not (tmp_path / "b.txt").exists()

    status = _corral(tmp_path, "status", "latest", "--json")
    data = json.loads(status.communicate(timeout=60)[0])
    tasks = {t["name"]: t for t in data["tasks"]}
    assert data["run"]["state"] == "failed", data["run"]
    assert reason in (data["run"]["error"] or "")
    assert tasks["slow"]["state"] == expected, tasks["slow"]
    assert tasks["after"]["state"] == "skipped", tasks["after"]
    watch = _corral(tmp_path, "status", "latest", "--watch", "--interval", "0.2")
    watch.communicate(timeout=60)
    assert watch.returncode == 1  # `--watch && next-step` does not go ahead

    (tmp_path / "hold").unlink()
    again = _corral(tmp_path, "run", "c.py", "-e", "fast", "-q")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, (out, err)
    assert data["run"]["id"] in err  # resumed, not a new run
    assert (tmp_path / "b.txt").read_text() == "a\n"
    with sqlite3.connect(tmp_path / ".corral" / "state.db") as conn:
        assert conn.execute("SELECT COUNT(*), MAX(state) FROM runs").fetchall() == [(1, "succeeded")]
