"""The Python API does what the command line does: list runs, attach to any run, refresh it
after its engine was SIGKILLed (it becomes *interrupted*, and the same run resumes), and cancel
it with its orphaned cluster jobs (real SLURM)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import corral
from corral import RunState

from .corehelp import wait_for

PIPE = '''
import time
from corral import pipeline, shell, task

@task
def step(prev: int) -> int:
    time.sleep(1.0)
    return prev + 1

@pipeline
def chain(n: int = 6):
    x = 0
    for i in range(n):
        x = step.options(name=f"step{i}")(x)
    return x

@pipeline
def on_cluster():
    return shell("sleep 120; echo done > {output}", outputs="slow.txt", name="slow")
'''

SCRIPT = '''
import sys, corral
pipe = corral.load_pipeline(sys.argv[1], sys.argv[3])
corral.run(pipe, executor=sys.argv[4], workdir=sys.argv[2], source=sys.argv[1],
           executor_options={"poll_interval": 0.3} if sys.argv[4] == "slurm" else {})
'''


def _engine(pipe: Path, workdir: Path, name: str, executor: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(pipe), str(workdir), name, executor],  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _kill(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_runs_attach_refresh_after_a_killed_engine(tmp_path: Path) -> None:
    pipe = tmp_path / "p.py"
    pipe.write_text(PIPE)
    wd = tmp_path / "wd"
    wd.mkdir()
    engine = _engine(pipe, wd, "chain", "local")
    try:
        handle = wait_for(lambda: (wd / ".corral" / "state.db").exists() and corral.runs(wd)
                          and corral.attach("latest", wd), what="the run to exist")
        wait_for(lambda: any(t["state"] == "succeeded" for t in handle.tasks()), timeout=60,
                 what="a first task to finish")
        assert handle.refresh() is RunState.RUNNING  # its engine is alive: left as it is
    finally:
        _kill(engine)
    assert handle.state is RunState.RUNNING  # as the dead engine left it ...
    assert handle.refresh() is RunState.INTERRUPTED  # ... until refreshed
    assert [r["id"] for r in corral.runs(wd)] == [handle.run_id]
    assert corral.attach(handle.run_id[:10], wd).run_id == handle.run_id  # a prefix will do
    rerun = corral.run(corral.load_pipeline(pipe, "chain"), workdir=wd, source=str(pipe))
    assert rerun.run_id == handle.run_id and rerun.value == 6  # the same run, resumed
    assert handle.refresh() is RunState.SUCCEEDED


@pytest.mark.slurm
def test_cancel_cancels_the_orphaned_cluster_jobs_of_a_dead_engine(tmp_path: Path) -> None:
    if shutil.which("squeue") is None:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail("SLURM required (CORRAL_REQUIRE_CLUSTERS=1) but squeue is not on PATH")
        pytest.skip("no SLURM")
    pipe = tmp_path / "p.py"
    pipe.write_text(PIPE)
    engine = _engine(pipe, tmp_path, "on_cluster", "slurm")
    try:
        handle = wait_for(lambda: (tmp_path / ".corral" / "state.db").exists() and corral.runs(tmp_path)
                          and corral.attach("latest", tmp_path), timeout=60, what="the run")
        job = wait_for(lambda: next((a["native_id"] for a in handle.attempts() if a["native_id"]), None),
                       timeout=60, what="the job to be submitted")
    finally:
        _kill(engine)

    def queued() -> bool:
        out = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True, check=False)  # noqa: S603
        return job.split("_")[0] in out.stdout

    assert queued(), "the orphaned job should still be in the queue"
    done = handle.cancel()
    assert (done.requested, done.jobs) == (False, 1)
    wait_for(lambda: not queued(), timeout=30, what="scancel to take the job away")
    assert handle.refresh() is RunState.CANCELLED
    assert {t["state"] for t in handle.tasks()} == {"cancelled"}
