"""A run's life, in one place: preparing it (config, identity, run id, plan), its work root,
the executor that serves it, running it to its end, controlling it, reconciling what a dead
engine or a detached submission left, and cancelling it with its orphaned cluster jobs.

The Python API (:mod:`corral.api`), the command line and the gateway all go through these
functions; nothing here imports them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from corral.errors import CorralError, TaskFailed, UsageError
from corral.states import TERMINAL_RUN_STATES, AttemptState, RunState
from corral.store.rows import RunRow
from corral.store.store import HEARTBEAT_STALE, Store

if TYPE_CHECKING:
    from corral.executors.base import Executor
    from corral.model import Pipeline

    from .engine import Engine, EngineOptions
    from .plan import Plan
    from .prepare import RunConfig

# The engine, the executors and detached mode are imported where a run is executed, cancelled
# or reconciled from its markers, not at the top: `corral status` and `corral runs` import this
# module and answer without them (issue 12: the command line answers at once).

log = logging.getLogger("corral")


@dataclass
class RunResult:
    """A run that ended in this process: its state, errors and (if it succeeded) its value."""

    run_id: str
    state: RunState
    errors: list[str]
    store: Store
    result: Any = None
    """The pipeline's return value as built (futures in it), see :attr:`value`."""
    engine: Engine | None = None
    """The engine that ran it (its final progress counts, its loader of stored values)."""

    @property
    def ok(self) -> bool:
        return self.state is RunState.SUCCEEDED

    @property
    def value(self) -> Any:
        """The pipeline's return value with futures replaced by results (loaded lazily)."""
        if not self.ok:
            raise TaskFailed(self.errors[0].split(":")[0] if self.errors else "?",
                             "; ".join(self.errors[:3]) or self.state.value)
        if self.engine is None:
            return None
        from .values import substitute

        return substitute(self.result, self.engine.load_future)


# ---------------------------------------------------------------------- running

class EngineListener:
    """What an executor reports of the attempts as they go (its listener), handed to the
    engine: attached runs and interactive executors alike."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def submitted(self, attempt_id: str, native_id: str) -> None:
        self.engine.rec.attempt(attempt_id, native_id=native_id)

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        self.engine.attempt_started(attempt_id, when, host)


def execute(pipeline: Pipeline[Any, Any], params: Mapping[str, Any], cfg: RunConfig,
            store: Store | None = None, engine_ready: Callable[[Engine], None] | None = None
            ) -> RunResult:
    """Run a pipeline to its end in this thread: prepare (or resume) the run, claim its lock,
    run the engine, release the lock with the final state."""
    from corral.executors import create_executor

    from .engine import EngineOptions
    from .prepare import executor_context, prepare_run
    from .runlog import run_log

    _warm_up(cfg, pipeline.imports)
    store = store or Store.open(cfg.workdir, cfg.db)
    prepared = prepare_run(pipeline, params, cfg, store)
    run_id = prepared.run_id
    note = store.claim_run(run_id)
    if note and cfg.on_note:
        cfg.on_note(note)
    ctx = executor_context(run_id, cfg.workdir.resolve(), prepared.jobs, pipeline.imports)
    executor = create_executor(cfg.executor, cfg.executor_options, ctx)
    opts = EngineOptions(jobs=prepared.jobs, force=list(cfg.force), no_cache=cfg.no_cache,
                         fail_fast=cfg.fail_fast)
    engine = _engine(store, prepared.plan, run_id, executor, opts, ctx.work_root, cfg)
    if engine_ready:
        engine_ready(engine)
    store.update_run(run_id, state=RunState.RUNNING.value, started_at=time.time(),
                     environment=_safe_env())
    state = RunState.INTERRUPTED
    try:
        with run_log(ctx.work_root):  # the libraries' chatter (dask) goes there, off the terminal
            try:
                executor.start(EngineListener(engine))
                state = engine.run()
            finally:
                executor.shutdown()
    except BaseException:
        _best_effort(engine.rec.flush)  # keep what finished; the first error is the one raised
        raise
    finally:
        error = "; ".join(engine.errors[:5]) or None
        # if the store cannot take it (full disk), the next engine finds this one's lock stale
        _best_effort(lambda: store.release_run(run_id, state=state.value, error=error,
                                               finished_at=time.time(), control="none"))
    return RunResult(run_id, state, engine.errors, store, prepared.plan.graph.result, engine)


def _best_effort(action: Callable[[], None]) -> None:
    """Clean-up that must not hide the error being raised (a store that cannot be written)."""
    try:
        action()
    except CorralError as exc:
        log.debug("clean-up after an error failed too: %s", exc)


def _engine(store: Store, plan: Plan, run_id: str, executor: Executor, opts: EngineOptions,
            work_root: Path, cfg: RunConfig) -> Engine:
    from .engine import Engine

    return Engine(store, plan, run_id, executor, opts, work_root, cfg.on_progress)


def _warm_up(cfg: RunConfig, preload: Collection[str]) -> None:
    from corral.executors import executor_class

    try:
        cls = executor_class(cfg.executor)
    except CorralError:
        return  # reported with its fix when the executor is created
    cls.warm_up(cfg.executor_options, tuple(sorted(preload)))


def _safe_env() -> dict[str, Any] | None:
    try:
        from corral.environment import collect_environment

        return collect_environment()
    except Exception:
        return None


# ---------------------------------------------------------------------- control

def request_control(store: Store, run_id: str, control: str) -> None:
    """Ask a run's engine to pause (``"pause"``), go on (``"none"``) or cancel (``"cancel"``)."""
    run_row = store.get_run(run_id)
    if RunState(run_row["state"]) in TERMINAL_RUN_STATES and control != "none":
        raise UsageError(f"run {run_row['id']} already ended ({run_row['state']})")
    store.update_run(run_row["id"], control=control)
    if control == "pause" and not store.engine_alive(run_row):
        store.update_run(run_row["id"], state=RunState.PAUSED.value)


def reconcile(store: Store, run_id: str) -> RunRow:
    """The run's row after bringing it up to date: a run whose engine died while running is
    *interrupted*; a detached or exported run takes its tasks' results from the exit markers
    (and its scheduler's view of the jobs without one). A *pending* run has no engine until the
    one that created it claims it, a moment later: only a stale one is interrupted."""
    run_row = store.get_run(run_id)
    state = run_row["state"]
    if state in (RunState.DETACHED.value, RunState.EXPORTED.value):
        from .detached import reconcile as reconcile_detached

        reconcile_detached(store, run_row["id"])
    elif not store.engine_alive(run_row):
        stale = time.time() - (run_row["created_at"] or 0) > HEARTBEAT_STALE
        if state == RunState.RUNNING.value or (state == RunState.PENDING.value and stale):
            store.update_run(run_row["id"], state=RunState.INTERRUPTED.value)
    return store.get_run(run_row["id"])


class Cancelled(NamedTuple):
    run_id: str
    requested: bool
    """True: a live engine was asked to cancel (it ends the run); False: done here."""
    jobs: int
    """Cluster jobs cancelled directly (orphans of a dead engine or of a detached run)."""


def cancel_run(store: Store, run_id: str) -> Cancelled:
    """Cancel a run. A live engine is asked to (it cancels its running attempts, on clusters
    too); a run without one has its recorded cluster jobs cancelled here and its unfinished
    tasks marked cancelled."""
    run_row = store.get_run(run_id)
    rid = str(run_row["id"])
    if store.engine_alive(run_row):
        request_control(store, rid, "cancel")
        return Cancelled(rid, True, 0)
    if RunState(run_row["state"]) in TERMINAL_RUN_STATES:
        raise UsageError(f"run {rid} already ended ({run_row['state']}); nothing to cancel")
    if RunState(run_row["state"]) in (RunState.DETACHED, RunState.EXPORTED):
        return _cancel_detached(store, rid)
    rows = [r for r in store.inflight_attempts(rid) if r["native_id"]]
    if rows:
        from corral.executors.base import AttemptRef

        from .prepare import recorded_executor

        recorded_executor(run_row).cancel_native(
            [AttemptRef(r["id"], r["native_id"], Path(r["workdir"] or "."), r["submitted_at"])
             for r in rows])
    store.mark_cancelled(rid)
    store.update_run(rid, state=RunState.CANCELLED.value, control="none")
    return Cancelled(rid, False, len(rows))


def _cancel_detached(store: Store, run_id: str) -> Cancelled:
    """A detached or exported run: the tasks whose jobs already wrote their exit markers are
    recorded as they ended (so a rerun reuses their results), the other jobs are deleted and
    their tasks cancelled. The reconciler does it under the run's claim; if another process
    holds the claim, it finds the request when it is done and cancels then."""
    from .detached import reconcile as reconcile_detached

    before = {r["id"] for r in store.inflight_attempts(run_id) if r["native_id"]}
    store.update_run(run_id, control="cancel")
    reconcile_detached(store, run_id)
    cancelled = sum(1 for a in store.attempts(run_id)
                    if a["id"] in before and a["state"] == AttemptState.CANCELLED.value)
    return Cancelled(run_id, False, cancelled)
