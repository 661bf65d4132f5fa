"""Reconciling a detached run (``corral status``): results from the attempts' exit markers,
the scheduler asked only about jobs that ended without one, failures skipping their
dependents, retries resubmitted (:mod:`.retry`), and the run's final state."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from corral.errors import CorralError
from corral.executors.base import Outcome
from corral.executors.batch.status import OUTCOME_OF_STATE, JobState, JobStatus
from corral.states import DONE_TASK_STATES, RunState, TaskState
from corral.store import Store
from corral.store.rows import plain
from corral.worker.execute import RESULT_FILE, read_marker

from ..recorder import Recorder
from ..values import output_files

if TYPE_CHECKING:
    pass

from .retry import Reconciling, cancel_requested, resubmit
from .scheduler import Scheduler
from .state import BAD_TASK, FINISHED_TASK, DetachedRun, DetachedTask, claim, control_of, load_state, release

log = logging.getLogger("corral.engine.detached")


def reconcile(store: Store, run_id: str, lost_after: float = 120.0) -> dict[str, Any]:
    """Bring a detached (or exported) run's rows up to date from its attempts' exit markers.

    Returns ``{"run_id", "state", "done", "failed", "skipped", "pending", "total"}``. Safe to
    call repeatedly, and from several processes at once: it holds the run's engine claim while
    it works, and a call that finds the claim held by another live process only reads the
    store. Other runs are returned unchanged.

    A failed attempt of a detached run's task with retries left is retried here (next attempt,
    with its resources), and the not yet run tasks below it are resubmitted behind the new job
    (:mod:`corral.engine.detached.retry`). Otherwise the task fails, and a task without a marker
    whose upstream failed (or was skipped) is skipped, its job deleted if the scheduler still
    holds it. The scheduler is asked once about the other jobs without markers (those whose
    upstream tasks all succeeded): one stuck in an error state (Grid Engine ``Eqw``, which
    would hold its dependents forever) is failed and deleted; one that ended without a marker
    (out of memory, timeout, node failure...) fails with that outcome; one the scheduler no
    longer knows ``lost_after`` seconds after submission is lost."""
    run = store.get_run(run_id)
    run_id = run["id"]
    if run["state"] not in (RunState.DETACHED, RunState.EXPORTED) or load_state(store, run_id) is None:
        return _summary(store, run_id, run["state"])
    if not claim(store, run_id):
        log.info("run %s is being reconciled by another process", run_id)
        return _summary(store, run_id, run["state"])
    try:
        run = store.get_run(run_id)  # as it is now that this process holds the claim
        state = load_state(store, run_id)
        final = run["state"]
        if state is not None and final in (RunState.DETACHED, RunState.EXPORTED):
            final = _reconcile(store, plain(run), state, lost_after)
    finally:
        release(store, run_id)
    if final in (RunState.DETACHED, RunState.EXPORTED) and control_of(store, run_id) == "cancel":
        return reconcile(store, run_id, lost_after)  # `corral cancel` came while we held it
    return _summary(store, run_id, final)


def _reconcile(store: Store, run: dict[str, Any], state: DetachedRun,
               lost_after: float) -> str:
    """One pass under the claim; returns the run's state."""
    sched = Scheduler(run, state)
    try:
        p = Reconciling(store, run, state, sched, lost_after)
        if run.get("control") == "cancel":
            _read_markers(p)  # what finished is kept (a rerun reuses it), then the rest goes
            p.rec.flush()
            return cancel_requested(p)
        pending = _read_markers(p)
        _skip_below_failures(p, pending)
        unknown = [d for d in pending if p.task_state[d.idx] not in FINISHED_TASK]
        _check_jobs(p, unknown)
        resubmit(p)
        _skip_below_failures(p, pending)
        p.rec.flush()
        # dependents before their parents: deleting a held parent first would release them
        sched.delete([native for _, native in sorted(p.doomed, key=lambda x: -x[0])])
    finally:
        sched.close()
    final = str(run["state"])
    if all(s in FINISHED_TASK for s in p.task_state.values()):
        # the invariant of a run's end: succeeded only if every task succeeded or was cached
        failed = any(s not in DONE_TASK_STATES for s in p.task_state.values())
        final = RunState.FAILED.value if failed else RunState.SUCCEEDED.value
        store.update_run(run["id"], state=final, finished_at=p.now,
                         error="some tasks failed" if failed else None)
    return final


def _read_markers(p: Reconciling) -> list[DetachedTask]:
    """Record every unfinished task whose attempt left its exit marker; returns the others."""
    pending: list[DetachedTask] = []
    for d in sorted(p.state.tasks.values(), key=lambda x: x.idx):
        if p.task_state[d.idx] in FINISHED_TASK:
            continue
        marker = read_marker(Path(d.workdir or "."))
        if marker is None:
            pending.append(d)
            continue
        failure = _finish(p, d, marker)
        if failure is not None:
            p.settle(d, *failure)
    return pending


def _skip_below_failures(p: Reconciling, pending: list[DetachedTask]) -> None:
    """Mark skipped every unfinished task below a failed or skipped one; their jobs are deleted.

    On SLURM the scheduler already removed their jobs (``--kill-on-invalid-dep``); on Grid
    Engine they may still be held or queued (their scripts would refuse to run the task)."""
    changed = True
    while changed:  # skips propagate down the chain
        changed = False
        for d in pending:
            if p.task_state[d.idx] in FINISHED_TASK:
                continue
            bad = [p.state.tasks[u].name for u in d.deps if p.task_state.get(u) in BAD_TASK]
            if not bad:
                continue
            changed = True
            if d.native_id:
                p.doomed.append((d.idx, d.native_id))
            p.set_state(d, TaskState.SKIPPED, finished_at=p.now,
                        error=f"upstream task {bad[0]} failed")
            if d.attempt_id in p.attempts:
                p.rec.attempt(d.attempt_id, state="cancelled", ended_at=p.now,
                              error=f"not run: upstream task {bad[0]} failed")


def _summary(store: Store, run_id: str, run_state: str) -> dict[str, Any]:
    rows = store.tasks(run_id)
    count = {s: sum(1 for r in rows if r["state"] == s) for s in {r["state"] for r in rows}}
    done = count.get("succeeded", 0) + count.get("cached", 0)
    return {"run_id": run_id, "state": run_state, "total": len(rows), "done": done,
            "failed": count.get("failed", 0), "skipped": count.get("skipped", 0),
            "cancelled": count.get("cancelled", 0),
            "pending": count.get("pending", 0) + count.get("queued", 0) + count.get("running", 0)}


def _finish(p: Reconciling, d: DetachedTask,
            marker: dict[str, Any]) -> tuple[Outcome, str] | None:
    """Record an attempt from its exit marker; returns its failure (outcome and the task's
    error), or ``None`` once its result is stored."""
    m = marker.get("metrics") or {}
    try:
        outcome = Outcome(str(marker.get("outcome")))
    except ValueError:
        outcome = Outcome.FAILED
    error = marker.get("error")
    if d.attempt_id in p.attempts:
        cols = ("started_at", "ended_at", "wall", "cpu_user", "cpu_system", "peak_rss",
                "read_bytes", "write_bytes", "exit_code", "host")
        names = {"started_at": "started", "ended_at": "ended"}
        measured = {c: m.get(names.get(c, c)) for c in cols}
        if measured["wall"] is None and m.get("started") and m.get("ended"):  # as attached runs
            measured["wall"] = float(m["ended"]) - float(m["started"])
        p.rec.attempt(d.attempt_id or "", state=outcome.value, error=error,
                      **{k: v for k, v in measured.items() if v is not None})
    if outcome is not Outcome.SUCCEEDED:
        first = (error or "").strip().splitlines()
        return outcome, f"{outcome.value.replace('_', ' ')}: {first[-1] if first else 'no details'}"
    cwd = Path(p.state.cwd)
    try:
        if d.shell_value is not None:
            data = d.shell_value
            files = [Path(o) for o in d.outputs]
        else:
            data = Path(d.workdir or ".", RESULT_FILE).read_bytes()
            files = output_files(cloudpickle.loads(data), cwd)
        store_result(p.store, p.rec, p.state.run_id, d, data, files, p.now)
    except (CorralError, OSError, ValueError, pickle.UnpicklingError) as exc:
        p.fail(d, f"its result could not be stored: {exc}")
        return None
    p.set_state(d, TaskState.SUCCEEDED, finished_at=p.now, cached=False, error=None)
    return None


def store_result(store: Store, rec: Recorder, run_id: str, d: DetachedTask, data: bytes,
                 files: list[Path], now: float) -> None:
    """The results row and artifacts of a finished task (as the engine records them)."""
    rec.task_result(run_id, d.task_id, d.key, d.name, d.attempt_id, data, files, now)


def _check_jobs(p: Reconciling, unknown: list[DetachedTask]) -> None:
    """Ask the scheduler (one query) about jobs without markers whose upstream tasks all
    succeeded (the others are settled by their upstream: skipped, or resubmitted after its
    retry). A job in an error state is failed and deleted; one that ended without a marker
    fails with the outcome of its state (out of memory, timeout...) and may be retried; one
    vanished, or without a job id in a detached run (its reconcile died while submitting),
    ``lost_after`` seconds after submission is lost."""
    def judged(d: DetachedTask) -> bool:
        return d.attempt_id in p.attempts and all(
            p.task_state.get(u) in (TaskState.SUCCEEDED.value, TaskState.CACHED.value)
            for u in d.deps)

    asked = [d for d in unknown if judged(d) and (d.native_id or p.retries_allowed)]
    if not asked:
        return
    natives = [d.native_id for d in asked if d.native_id]
    statuses = p.sched.query(natives) if natives else {}
    if statuses is None:
        return
    for d in asked:
        st = statuses.get(d.native_id or "")
        old = p.now - (p.attempts[d.attempt_id]["submitted_at"] or p.now) > p.lost_after
        found = _job_outcome(d, st, old)
        if found is None or read_marker(Path(d.workdir or ".")) is not None:
            continue  # still queued or running, or finished meanwhile (next reconcile)
        outcome, why = found
        if st is not None and st.state is JobState.ERROR_HELD and d.native_id:
            p.doomed.append((d.idx, d.native_id))
        measured = {} if st is None else {"exit_code": st.exit_code, "peak_rss": st.max_rss,
                                          "host": st.host}
        p.rec.attempt(d.attempt_id or "", state=outcome.value, ended_at=p.now, error=why,
                      **{k: v for k, v in measured.items() if v is not None})
        p.settle(d, outcome, why)


def _job_outcome(d: DetachedTask, st: JobStatus | None,
                 old: bool) -> tuple[Outcome, str] | None:
    """How a job without a marker ended, by the scheduler's word; ``None``: not yet known."""
    job = f"job {d.native_id}"
    if not d.native_id:
        if not old:
            return None
        return Outcome.LOST, "its job was never submitted (the reconcile submitting it stopped)"
    if st is not None and st.state is JobState.ERROR_HELD:
        return Outcome.FAILED, (f"{job} is stuck in an error state ({st.reason or 'no reason'})"
                                " and never runs; it was deleted with its waiting dependents")
    if st is None or st.state is JobState.COMPLETED:
        if not old:  # a slow shared file system may show the marker later
            return None
        if st is None:
            return Outcome.LOST, f"{job} vanished from the scheduler without an exit marker"
        return Outcome.LOST, f"{job} ended COMPLETED without an exit marker"
    if not st.state.terminal:
        return None
    text = f"{job} ended {st.state.name} without an exit marker"
    if st.exit_code is not None:
        text += f" (exit code {st.exit_code})"
    if st.reason:
        text += f": {st.reason}"
    return OUTCOME_OF_STATE[st.state], text
