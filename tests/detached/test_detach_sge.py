"""Detached mode on Grid Engine, where ``-hold_jid`` waits for parents to *end*, not succeed.

Measured on the local Grid Engine 8.1.9: a dependent of a job that exits non-zero is released
and runs; a dependent of a job in ``Eqw`` (its script exited 100) stays in ``hqw`` for ever;
deleting the ``Eqw`` parent releases the dependent, which then runs. So detached job scripts check
their parents' exit markers first, and ``reconcile`` fails a job stuck in ``Eqw`` and deletes it
and its held dependents (dependents first).

The first test needs no cluster: it runs exported SGE job scripts with bash, in order.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.api import RunConfig
from corral.engine.detached import load_state, reconcile, submit_detached
from corral.export import export_script
from corral.store import Store

from .test_detach import _cfg, _cluster, _load, _values, _wait, queued

STUCK = '''
import os
from corral import pipeline, task


@task
def die_hard(x: int) -> int:
    return x  # never runs: the job's setup line exits 100 (see below)


@task
def after(x: int) -> int:
    return x + 1


@pipeline
def stuck():
    return after(after(die_hard(1)))
'''


def _run_exported_jobs(dest: Path) -> None:
    """Run the job scripts of an exported SGE script with bash, in its submission order (each
    element of an array job, ``#$ -t 1-N``, with its ``SGE_TASK_ID``)."""
    jobs = re.findall(r"([\w.-]+\.sh)\)", dest.read_text())
    assert jobs
    for name in jobs:
        script = dest.parent / f"{dest.stem}.jobs" / name
        size = re.search(r"^#\$ -t 1-(\d+)$", script.read_text(), re.M)
        for i in range(1, int(size.group(1)) + 1 if size else 2):
            env = {**os.environ, "SGE_TASK_ID": str(i)} if size else None
            subprocess.run(["bash", str(script)], check=False, timeout=60, env=env)  # noqa: S603


def test_job_scripts_check_their_parents_markers(tmp_path: Path) -> None:
    """Without a scheduler: a job released after a failed parent does not run its task."""
    dest = export_script(_load(tmp_path, "broken"), {}, _cfg(tmp_path, "local"),
                         tmp_path / "broken.sh", fmt="sge")
    _run_exported_jobs(dest)
    store = Store.open(tmp_path)
    run_id = store.list_runs(1)[0]["id"]
    state = load_state(store, run_id)
    assert state is not None
    for t in state.tasks.values():
        if t.name == "boom":
            assert '"outcome": "failed"' in Path(t.workdir, "exit.json").read_text()
            continue
        assert not Path(t.workdir, "exit.json").exists()
        assert "not running this task" in Path(t.workdir, "stderr.log").read_text()
    summary = reconcile(store, run_id)
    assert summary["state"] == "failed"
    assert (summary["failed"], summary["skipped"]) == (1, 2)
    # and after successful parents the same check lets the task run
    ok = export_script(_load(tmp_path, "chain"), {}, _cfg(tmp_path, "local"),
                       tmp_path / "chain.sh", fmt="sge")
    _run_exported_jobs(ok)
    run_id = store.list_runs(1)[0]["id"]
    assert reconcile(store, run_id)["state"] == "succeeded"
    assert corral.Client(tmp_path).run(run_id).task_result("total") == 44


@pytest.mark.sge
def test_parent_stuck_in_eqw_is_failed_and_deleted_with_its_dependents(tmp_path: Path) -> None:
    _cluster("sge")
    (tmp_path / "stuck.py").write_text(STUCK)
    # a setup line exiting 100 leaves the job in Eqw (the job script maps a worker's own 99/100
    # to 1, so a task can no longer get there by itself)
    cfg = RunConfig(executor="sge", workdir=tmp_path, new=True,
                    executor_options={"setup": ["exit 100"]})
    run_id = submit_detached(corral.load_pipeline(tmp_path / "stuck.py", "stuck"), {}, cfg)
    store = Store.open(tmp_path)
    state = load_state(store, run_id)
    assert state is not None
    parent = next(t for t in state.tasks.values() if t.name == "die_hard")
    children = sorted((t for t in state.tasks.values() if t is not parent), key=lambda t: t.idx)
    jobs = [t.native_id for t in state.tasks.values() if t.native_id]
    try:
        _check_stuck_run(store, run_id, tmp_path, parent, children, jobs)
    finally:
        subprocess.run(["qdel", *jobs], capture_output=True, check=False)  # noqa: S603


def _check_stuck_run(store: Store, run_id: str, tmp_path: Path, parent: Any,
                     children: list[Any], jobs: list[str]) -> None:
    # what Grid Engine does on its own: the parent sits in Eqw, the children in hqw
    deadline = time.time() + 60
    while True:
        seen = queued("sge", jobs)
        if seen.get(parent.native_id) == "Eqw":
            break
        assert time.time() < deadline, f"parent never reached Eqw: {seen}"
        time.sleep(0.5)
    time.sleep(3)  # several scheduling intervals: nothing gets released
    seen = queued("sge", jobs)
    assert [seen.get(c.native_id) for c in children] == ["hqw", "hqw"], seen
    # reconcile fails the parent and deletes it with its held children (children first)
    summary = reconcile(store, run_id)
    assert summary["state"] == "failed", summary
    assert (summary["failed"], summary["skipped"]) == (1, 2)
    states = _values(tmp_path, run_id)
    assert states.pop("die_hard") == "failed"
    assert list(states.values()) == ["skipped", "skipped"], states
    error = next(t["error"] for t in store.tasks(run_id) if t["name"] == "die_hard")
    assert error and "error state" in error and "deleted" in error, error
    deadline = time.time() + 30
    while queued("sge", jobs):
        assert time.time() < deadline, f"jobs still queued: {queued('sge', jobs)}"
        time.sleep(0.5)
    time.sleep(2)  # had a child been released before its deletion, it would run now
    for c in children:  # deleted while held: they never started
        assert not Path(c.workdir, "stderr.log").exists()
    assert _wait(store, run_id, timeout=5)["state"] == "failed"  # idempotent
