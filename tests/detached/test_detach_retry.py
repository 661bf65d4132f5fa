"""Retries of detached runs, applied by ``reconcile`` (``corral status``), on the real local
SLURM and Grid Engine (each cluster test runs once per scheduler, like ``test_detach.py``).

``hog`` needs more memory than its first attempt asks for: SLURM's cgroup kills the job (no
exit marker; the scheduler says OUT_OF_MEMORY), Grid Engine's ``h_vmem`` limit makes the
allocation raise MemoryError (the marker says out_of_memory). ``flaky`` raises on attempt 1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import corral
from corral.api import RunConfig
from corral.engine.detached import load_state, reconcile, submit_detached
from corral.export import export_script
from corral.store import Store

from .test_detach import _wait, queued, sched  # noqa: F401 - sched is a fixture

RETRY = '''
import os
from corral import Resources, pipeline, task


def grow(attempt: int) -> Resources:
    return Resources(memory="300M" if attempt == 1 else "2G")


@task(retries=1, resources=grow)
def hog(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return megabytes


@task(retries=1)
def flaky(x: int) -> int:
    if os.environ["CORRAL_ATTEMPT"] == "1":
        raise RuntimeError("attempt 1 always fails")
    return x * 10


@task(retries=1)
def hopeless(x: int) -> int:
    raise ValueError(f"attempt {os.environ['CORRAL_ATTEMPT']} fails too")


@task
def inc(x: int) -> int:
    return x + 1


@task
def add(a: int, b: int) -> int:
    return a + b


@pipeline
def retried():
    return add(inc(hog(600)), inc(flaky(2)))


@pipeline
def flaky_chain():
    return inc(inc(flaky(4)))


@pipeline
def exhausted():
    return inc(inc(hopeless(1)))
'''


def _load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "pipe_retry.py"
    if not path.exists():
        path.write_text(RETRY)
    return corral.load_pipeline(path, name)


def _cfg(tmp_path: Path, executor: str) -> RunConfig:
    return RunConfig(executor=executor, workdir=tmp_path, new=True,
                     executor_options={"accounting": "none"} if executor == "slurm" else {})


def _attempts(store: Store, run_id: str) -> dict[str, list[dict[str, Any]]]:
    """Attempt rows per task name, in attempt order."""
    names = {t["id"]: t["name"] for t in store.tasks(run_id)}
    out: dict[str, list[dict[str, Any]]] = {}
    for a in store.attempts(run_id):
        out.setdefault(names[a["task_id"]], []).append(dict(a))
    return out


def test_retry_with_grown_resources_and_downstream_resubmitted(tmp_path: Path, sched: str) -> None:
    run_id = submit_detached(_load(tmp_path, "retried"), {}, _cfg(tmp_path, sched))
    store = Store.open(tmp_path)
    first = load_state(store, run_id)
    assert first is not None
    old_jobs = {t.name: t.native_id or "" for t in first.tasks.values()}
    summary = _wait(store, run_id, timeout=180)
    assert summary["state"] == "succeeded", (summary, _errors(store, run_id))
    assert corral.Client(tmp_path).run(run_id).task_result("add") == 601 + 21
    by_task = _attempts(store, run_id)
    hog = by_task["hog"]
    assert [a["state"] for a in hog] == ["out_of_memory", "succeeded"], hog
    assert [a["resources"]["memory"] for a in hog] == [300 * 1024**2, 2 * 1024**3]
    assert [a["state"] for a in by_task["flaky"]] == ["failed", "succeeded"]
    assert "attempt 1 always fails" in by_task["flaky"][0]["error"]
    # the tasks below were withdrawn (never ran) and resubmitted behind the new jobs
    for rows in (by_task["inc"], by_task["inc~1"]):
        assert [a["state"] for a in rows] == ["withdrawn", "succeeded"], rows
        assert "was retried" in rows[0]["error"]
        assert not Path(rows[0]["workdir"], "exit.json").exists()
    # add sits below both retried tasks: withdrawn once per reconcile that retried one of them
    adds = [a["state"] for a in by_task["add"]]
    assert adds[-1] == "succeeded" and set(adds[:-1]) == {"withdrawn"} and len(adds) in (2, 3)
    tasks = {t["name"]: t for t in store.tasks(run_id)}
    assert tasks["hog"]["attempts"] == 2 and tasks["hog"]["state"] == "succeeded"
    # the old jobs of the chain are gone from the queue, and every attempt has its own job
    assert not queued(sched, [j for j in old_jobs.values() if j])
    natives = [a["native_id"] for rows in by_task.values() for a in rows]
    assert len(set(natives)) == len(natives)
    count = len(store.attempts(run_id))
    assert _wait(store, run_id, timeout=5)["state"] == "succeeded"  # idempotent
    assert len(store.attempts(run_id)) == count


def _errors(store: Store, run_id: str) -> list[tuple[str, str, str | None]]:
    return [(t["name"], t["state"], t["error"]) for t in store.tasks(run_id)]


def test_concurrent_status_submit_one_retry(tmp_path: Path, sched: str) -> None:
    """Several ``corral status`` at the moment the failure is seen: exactly one retry."""
    run_id = submit_detached(_load(tmp_path, "flaky_chain"), {}, _cfg(tmp_path, sched))
    store = Store.open(tmp_path)
    state = load_state(store, run_id)
    assert state is not None
    flaky = next(t for t in state.tasks.values() if t.name == "flaky")
    deadline = time.time() + 90
    while not Path(flaky.workdir, "exit.json").exists():
        assert time.time() < deadline, "attempt 1 of flaky never ended"
        time.sleep(0.5)
    argv = [sys.executable, "-m", "corral.cli.app", "status", run_id, "--workdir", str(tmp_path)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,  # noqa: S603
                              text=True) for _ in range(3)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    summary = _wait(store, run_id, timeout=120)
    assert summary["state"] == "succeeded", (summary, _errors(store, run_id))
    assert corral.Client(tmp_path).run(run_id).task_result("inc~1") == 42
    by_task = _attempts(store, run_id)
    assert [a["number"] for a in by_task["flaky"]] == [1, 2]
    assert sorted(len(rows) for rows in by_task.values()) == [2, 2, 2]
    assert store.get_run(run_id)["engine_pid"] is None  # the claim was released


def test_retries_exhausted_skip_downstream(tmp_path: Path, sched: str) -> None:
    run_id = submit_detached(_load(tmp_path, "exhausted"), {}, _cfg(tmp_path, sched))
    store = Store.open(tmp_path)
    summary = _wait(store, run_id, timeout=180)
    assert summary["state"] == "failed", summary
    assert (summary["failed"], summary["skipped"]) == (1, 2), _errors(store, run_id)
    by_task = _attempts(store, run_id)
    assert [a["state"] for a in by_task["hopeless"]] == ["failed", "failed"]
    assert "attempt 2 fails too" in by_task["hopeless"][1]["error"]
    tasks = {t["name"]: t for t in store.tasks(run_id)}
    assert tasks["hopeless"]["state"] == "failed" and tasks["hopeless"]["attempts"] == 2
    for name, rows in by_task.items():
        if name == "hopeless":
            continue
        assert tasks[name]["state"] == "skipped"
        assert [a["state"] for a in rows] == ["withdrawn", "cancelled"], rows
        assert not any(Path(a["workdir"], "exit.json").exists() for a in rows)
    natives = [a["native_id"] for rows in by_task.values() for a in rows if a["native_id"]]
    deadline = time.time() + 30
    while queued(sched, natives):
        assert time.time() < deadline, queued(sched, natives)
        time.sleep(0.5)


def test_reconcile_leaves_a_run_claimed_by_another_process_alone(tmp_path: Path) -> None:
    """No cluster: an exported run whose claim a live process holds is only read."""
    export_script(_load(tmp_path, "flaky_chain"), {}, RunConfig(executor="local",
                  workdir=tmp_path, new=True), tmp_path / "p.sh")
    store = Store.open(tmp_path)
    run_id = store.list_runs(1)[0]["id"]
    state = load_state(store, run_id)
    assert state is not None
    flaky = next(t for t in state.tasks.values() if t.name == "flaky")
    Path(flaky.workdir, "exit.json").write_text('{"outcome": "failed", "error": "boom"}')
    other = os.getppid()  # alive, on this host, not us
    store.update_run(run_id, engine_pid=other, engine_host=socket.gethostname())
    assert reconcile(store, run_id)["state"] == "exported"
    assert {t["name"]: t["state"] for t in store.tasks(run_id)}["flaky"] == "running"
    store.update_run(run_id, engine_pid=None)
    summary = reconcile(store, run_id)
    # an exported run is not resubmitted by reconcile: the failure is final
    assert summary["state"] == "failed" and (summary["failed"], summary["skipped"]) == (1, 2)
    assert store.get_run(run_id)["engine_pid"] is None


def test_a_stale_claim_is_taken_over(tmp_path: Path) -> None:
    export_script(_load(tmp_path, "flaky_chain"), {}, RunConfig(executor="local",
                  workdir=tmp_path, new=True), tmp_path / "p.sh")
    store = Store.open(tmp_path)
    run_id = store.list_runs(1)[0]["id"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.update_run(run_id, engine_pid=dead.pid, engine_host=socket.gethostname())
    state = load_state(store, run_id)
    assert state is not None
    flaky = next(t for t in state.tasks.values() if t.name == "flaky")
    Path(flaky.workdir, "exit.json").write_text('{"outcome": "failed", "error": "boom"}')
    assert reconcile(store, run_id)["state"] == "failed"
    assert store.get_run(run_id)["engine_pid"] is None


def test_a_cancel_left_for_the_reconcile_is_carried_out(tmp_path: Path) -> None:
    """`corral cancel` that found the claim held leaves a request; reconcile performs it."""
    export_script(_load(tmp_path, "flaky_chain"), {}, RunConfig(executor="local",
                  workdir=tmp_path, new=True), tmp_path / "p.sh")
    store = Store.open(tmp_path)
    run_id = store.list_runs(1)[0]["id"]
    store.update_run(run_id, control="cancel")
    assert reconcile(store, run_id)["state"] == "cancelled"
    run = store.get_run(run_id)
    assert (run["state"], run["control"], run["engine_pid"]) == ("cancelled", "none", None)
    assert {t["state"] for t in store.tasks(run_id)} == {"cancelled"}
