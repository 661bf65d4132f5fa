"""Detached mode: submit a whole pipeline to a batch scheduler as a chain of dependent jobs,
then exit. No engine stays running; :func:`reconcile` (``corral status``) reads the exit
markers later and records results in the store.

Every not-cached task becomes one job. A Python task's arguments that come from other tasks
are :class:`~corral.worker.execute.ResultRef` objects naming the upstream attempt's
``result.pkl`` (the worker loads them); its job waits for the upstream jobs with the
scheduler's dependency. On SLURM that is ``afterok`` with ``--kill-on-invalid-dep=yes``, so a
failed parent removes its descendants. Grid Engine's ``-hold_jid`` releases a job when its
parents *end*, failed or not, so there the job script first checks the parents' exit markers
and exits without running the task unless they say ``succeeded``; :func:`reconcile` marks such
tasks skipped and deletes jobs a failed parent still holds (a parent stuck in ``Eqw`` would
hold them forever). Dynamic scatters (``each(...)``) cannot be planned ahead and are refused.

What :func:`reconcile` needs later is kept in ``<work root>/detach.pkl``.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from corral.errors import CorralError, UsageError
from corral.executors import create_executor
from corral.executors.base import ExecutorContext, TaskSpec
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.status import JobState, JobStatus
from corral.graph import Future, NodeKind
from corral.store import Store
from corral.worker.execute import RESULT_FILE, ResultRef, read_marker

from .engine import DONE, Engine, EngineOptions
from .plan import topological_order
from .recorder import Recorder
from .specs import make_spec, node_resources
from .states import RunState, TaskState
from .values import GatherRef, output_files

if TYPE_CHECKING:
    from corral.api import RunConfig
    from corral.model import Pipeline

log = logging.getLogger(__name__)

DETACHED = "detached"
"""Run state of a submitted detached run (until :func:`reconcile` sees it end)."""
EXPORTED = "exported"
"""Run state of a run written out by ``corral export``."""
STATE_FILE = "detach.pkl"


@dataclass
class DetachedTask:
    idx: int
    name: str
    key: str
    task_id: int
    kind: str
    deps: list[int]
    attempt_id: str = ""
    workdir: str = ""
    native_id: str | None = None
    shell_value: bytes | None = None
    """Pickled value of a shell task's future (its output paths)."""
    outputs: list[str] = field(default_factory=list)
    """Absolute declared output paths of a shell task."""


@dataclass
class DetachedRun:
    run_id: str
    cwd: str
    kind: str
    tasks: dict[int, DetachedTask]


@dataclass
class PreparedJob:
    task: DetachedTask
    spec: TaskSpec
    script: str
    deps: list[int]
    """Indexes of the upstream tasks that have jobs (not cached)."""


@dataclass
class Prepared:
    run_id: str
    store: Store
    executor: BatchExecutor
    engine: Engine
    work_root: Path
    jobs: list[PreparedJob]
    """In topological order."""
    state: DetachedRun


def prepare_jobs(pipeline: Pipeline[Any, Any], params: Mapping[str, Any], cfg: RunConfig,
                 kind: str | None = None) -> Prepared:
    """Create the run, persist its tasks, write every payload and render every job script.

    Nothing is submitted. ``kind`` overrides ``cfg.executor`` (``corral export --format``)."""
    from corral.api import prepare_run

    kind = kind or cfg.executor
    store = Store.open(cfg.workdir, cfg.db)
    run_id, the_plan, executor_cfg = prepare_run(pipeline, params, cfg, store)
    graph = the_plan.graph
    expand = [n.name for n in graph.nodes if n.kind is NodeKind.EXPAND]
    if expand:
        raise UsageError(
            f"detached/exported runs need a static graph, but {expand[0]} maps over each(...) "
            "(known only at run time); run it attached instead"
        )
    workdir = cfg.workdir.resolve()
    work_root = workdir / ".corral" / "work" / run_id
    options = cfg.executor_options if kind == cfg.executor else {}
    ctx = ExecutorContext(run_id, work_root, workdir, executor_cfg["jobs"], sys.executable)
    executor = create_executor(kind, options, ctx)
    if not isinstance(executor, BatchExecutor):
        raise UsageError(
            f"detached mode needs a batch-scheduler executor (slurm, sge, pbs, lsf), not {kind!r}"
        )
    if executor.staging is not None:
        executor.shutdown()
        raise UsageError(
            "detached/exported runs need the work directory shared with the cluster (jobs read "
            "their parents' results from it); this profile's transport has "
            "shared_filesystem = false, so run the pipeline attached"
        )
    store.claim_run(run_id)
    try:
        opts = EngineOptions(jobs=executor_cfg["jobs"], force=list(cfg.force),
                             no_cache=cfg.no_cache)
        engine = Engine(store, the_plan, run_id, executor, opts, work_root)
        engine.prepare()
        jobs = _build_jobs(engine, executor, work_root)
        engine.rec.flush()
    except BaseException:
        store.release_run(run_id, state=RunState.FAILED.value, finished_at=time.time(),
                          error="preparing the detached run failed")
        raise
    tasks = {j.task.idx: j.task for j in jobs}
    state = DetachedRun(run_id, str(the_plan.cwd), kind, tasks)
    return Prepared(run_id, store, executor, engine, work_root, jobs, state)


def _build_jobs(engine: Engine, executor: BatchExecutor, work_root: Path) -> list[PreparedJob]:
    graph = engine.graph
    order, _ = topological_order(graph)
    has_job: set[int] = set()
    attempt_dir: dict[int, Path] = {}
    cached_dir = work_root / "cached"

    def ref(fut: Future, consumer: str, for_shell: bool) -> Any:
        node = fut.node
        if node.kind is NodeKind.SHELL and node.shell is not None:
            from .values import shell_value

            return shell_value(node.shell)
        if engine.state[node.idx] == DONE:
            if for_shell:
                return engine.load_key(node.key)
            path = cached_dir / f"{node.key}.pkl"
            if not path.exists():
                cached_dir.mkdir(parents=True, exist_ok=True)
                path.write_bytes(cloudpickle.dumps(engine.load_key(node.key)))
            return ResultRef(str(path))
        if for_shell:
            raise UsageError(
                f"shell task {consumer} takes the value of Python task {node.name}, unknown "
                "until it runs; detached mode cannot do that, run the pipeline attached"
            )
        if node.kind is NodeKind.GATHER:
            return [ref(Future(graph.nodes[m]), consumer, for_shell) for m in node.members or []]
        return ResultRef(str(attempt_dir[node.idx] / RESULT_FILE))

    jobs: list[PreparedJob] = []
    now = time.time()
    for idx in order:
        node = graph.nodes[idx]
        if engine.state[idx] == DONE or node.kind is NodeKind.GATHER:
            continue
        is_shell = node.kind is NodeKind.SHELL
        try:
            kind, payload = engine.payloads.payload(node, functools.partial(
                ref, consumer=node.name, for_shell=is_shell))
        except CorralError as exc:
            raise UsageError(f"task {node.name}: {exc}") from None
        n = engine.attempt_no[idx] + 1
        engine.attempt_no[idx] = n
        resources = node_resources(node, n)
        executor.validate(resources)
        spec = make_spec(node, engine.run_id, n, work_root, engine.plan.cwd, kind, payload,
                         resources)
        attempt_dir[idx] = Path(os.path.abspath(spec.workdir))
        executor.write_payload(spec)
        deps = sorted(_job_deps(engine, idx, has_job))
        rendered = executor.render_job([spec], after=[str(attempt_dir[d]) for d in deps])
        has_job.add(idx)
        task = DetachedTask(
            idx, node.name, node.key, engine.task_id[idx], node.kind.value, deps,
            spec.attempt_id, str(attempt_dir[idx]),
        )
        if is_shell and node.shell is not None:
            from .values import shell_value

            task.shell_value = cloudpickle.dumps(shell_value(node.shell))
            task.outputs = [str(Path(engine.plan.cwd, o).resolve()) for o in node.outputs]
        jobs.append(PreparedJob(task, spec, rendered.script, deps))
        engine.rec.task(engine.task_id[idx], state=TaskState.RUNNING.value, attempts=n,
                        started_at=now)
    return jobs


def _job_deps(engine: Engine, idx: int, has_job: set[int]) -> set[int]:
    """Upstream tasks with jobs; through gathers (which have no job) to their members."""
    out: set[int] = set()
    for d in engine.graph.nodes[idx].deps:
        if d in has_job:
            out.add(d)
        elif engine.graph.nodes[d].kind is NodeKind.GATHER:
            out |= _job_deps(engine, d, has_job)
    return out


def _attempt_row(p: Prepared, job: PreparedJob, native_id: str | None, state: str) -> dict[str, Any]:
    return {
        "id": job.spec.attempt_id, "task_id": job.task.task_id, "run_id": p.run_id,
        "number": job.spec.attempt, "state": state, "executor": p.executor.kind,
        "workdir": str(job.task.workdir), "resources": job.spec.resources.to_dict(),
        "submitted_at": time.time(), "native_id": native_id,
    }


def _save_state(p: Prepared) -> None:
    (p.work_root).mkdir(parents=True, exist_ok=True)
    (p.work_root / STATE_FILE).write_bytes(pickle.dumps(p.state))


def submit_detached(pipeline: Pipeline[Any, Any], params: Mapping[str, Any],
                    cfg: RunConfig) -> str:
    """Submit every not-cached task as one dependent batch job and return the run id at once.

    Raises :class:`UsageError` for dynamic scatters and for executors that are not batch
    schedulers. Follow the run with :func:`reconcile` (``corral status``)."""
    p = prepare_jobs(pipeline, params, cfg)
    native: dict[int, str] = {}
    ex = p.executor
    try:
        for job in p.jobs:
            path = job.task.workdir + "/job.sh"
            ex.transport.write_bytes(path, job.script.encode(), mode=0o755)
            argv = ex.submit_argv(path, [native[d] for d in job.deps])
            result = ex.transport.run(argv, input=job.script if ex.submit_via_stdin else None,
                                      timeout=ex.settings.submit_timeout)
            native[job.task.idx] = job.task.native_id = ex.parse_submit(result.stdout)
            p.engine.rec.attempt_new(_attempt_row(p, job, job.task.native_id, "submitted"))
    except BaseException as exc:
        p.engine.rec.flush()
        if native:
            try:
                ex.cancel_jobs(list(native.values()))
            except Exception:  # best effort while failing anyway
                pass
        p.store.release_run(p.run_id, state=RunState.FAILED.value, finished_at=time.time(),
                            error=f"detached submission failed: {exc}")
        raise
    finally:
        ex.shutdown()
    p.engine.rec.flush()
    _save_state(p)
    final = DETACHED if p.jobs else RunState.SUCCEEDED.value
    p.store.release_run(p.run_id, state=final, started_at=time.time(),
                        **({"finished_at": time.time()} if not p.jobs else {}))
    return p.run_id


# ---------------------------------------------------------------------- reconcile

_FINISHED_TASK = {TaskState.SUCCEEDED.value, TaskState.CACHED.value, TaskState.FAILED.value,
                  TaskState.SKIPPED.value, TaskState.CANCELLED.value}


def load_state(store: Store, run_id: str) -> DetachedRun | None:
    run = store.get_run(run_id)
    path = Path(run["workdir"]) / ".corral" / "work" / run["id"] / STATE_FILE
    try:
        state: DetachedRun = pickle.loads(path.read_bytes())
    except OSError:
        return None
    return state


def reconcile(store: Store, run_id: str, lost_after: float = 120.0) -> dict[str, Any]:
    """Bring a detached (or exported) run's rows up to date from its attempts' exit markers.

    Returns ``{"run_id", "state", "done", "failed", "skipped", "pending", "total"}``. Safe to
    call repeatedly; other runs are returned unchanged. A task without a marker whose upstream
    failed (or was skipped) is skipped, and its job is deleted if the scheduler still holds it.
    The scheduler is asked once about the other jobs without markers: one stuck in an error
    state (Grid Engine ``Eqw``, which would hold its dependents forever) is failed and deleted;
    one the scheduler no longer knows (or reports ended) ``lost_after`` seconds after
    submission is failed."""
    run = store.get_run(run_id)
    run_id = run["id"]
    state = load_state(store, run_id)
    if state is None or run["state"] not in (DETACHED, EXPORTED):
        return _summary(store, run_id, run["state"])
    tasks = {r["id"]: r for r in store.tasks(run_id)}
    task_state = {d.idx: tasks[d.task_id]["state"] for d in state.tasks.values()}
    attempts = {a["id"]: a for a in store.attempts(run_id)}
    rec = Recorder(store)
    now = time.time()
    pending: list[DetachedTask] = []
    for d in sorted(state.tasks.values(), key=lambda x: x.idx):
        if task_state[d.idx] in _FINISHED_TASK:
            continue
        marker = read_marker(Path(d.workdir or "."))
        if marker is None:
            pending.append(d)
            continue
        _finish(store, rec, state, d, marker, attempts.get(d.attempt_id or ""), now)
        task_state[d.idx] = (TaskState.SUCCEEDED.value if marker.get("outcome") == "succeeded"
                             else TaskState.FAILED.value)
    sched = _Scheduler(run, state)
    try:
        doomed = _skip_below_failures(state, pending, task_state, attempts, rec, now)
        unknown = [d for d in pending if task_state[d.idx] not in _FINISHED_TASK]
        doomed += _check_jobs(sched, unknown, attempts, rec, task_state, now, lost_after)
        doomed += _skip_below_failures(state, pending, task_state, attempts, rec, now)
        rec.flush()
        # dependents before their parents: deleting a held parent first would release them
        sched.delete([d.native_id for d in sorted(doomed, key=lambda x: -x.idx) if d.native_id])
    finally:
        sched.close()
    left = [i for i, s in task_state.items() if s not in _FINISHED_TASK]
    final = run["state"]
    if not left:
        failed = any(s in (TaskState.FAILED.value, TaskState.SKIPPED.value)
                     for s in task_state.values())
        final = RunState.FAILED.value if failed else RunState.SUCCEEDED.value
        store.update_run(run_id, state=final, finished_at=now,
                         error="some tasks failed" if failed else None)
    return _summary(store, run_id, final)


def _skip_below_failures(state: DetachedRun, pending: list[DetachedTask],
                         task_state: dict[int, str], attempts: dict[str, dict[str, Any]],
                         rec: Recorder, now: float) -> list[DetachedTask]:
    """Mark skipped every unfinished task below a failed or skipped one; returns them.

    On SLURM the scheduler already removed their jobs (``--kill-on-invalid-dep``); on Grid
    Engine they may still be held or queued (their scripts would refuse to run the task)."""
    bad_states = (TaskState.FAILED.value, TaskState.SKIPPED.value)
    skipped: list[DetachedTask] = []
    changed = True
    while changed:  # skips propagate down the chain
        changed = False
        for d in pending:
            if task_state[d.idx] in _FINISHED_TASK:
                continue
            bad = [state.tasks[u].name for u in d.deps if task_state.get(u) in bad_states]
            if not bad:
                continue
            changed = True
            skipped.append(d)
            task_state[d.idx] = TaskState.SKIPPED.value
            rec.task(d.task_id, state=TaskState.SKIPPED.value, finished_at=now,
                     error=f"upstream task {bad[0]} failed")
            if d.attempt_id in attempts:
                rec.attempt(d.attempt_id, state="cancelled", ended_at=now,
                            error=f"not run: upstream task {bad[0]} failed")
    return skipped


def _summary(store: Store, run_id: str, run_state: str) -> dict[str, Any]:
    rows = store.tasks(run_id)
    count = {s: sum(1 for r in rows if r["state"] == s) for s in {r["state"] for r in rows}}
    done = count.get("succeeded", 0) + count.get("cached", 0)
    return {"run_id": run_id, "state": run_state, "total": len(rows), "done": done,
            "failed": count.get("failed", 0), "skipped": count.get("skipped", 0),
            "cancelled": count.get("cancelled", 0),
            "pending": count.get("pending", 0) + count.get("running", 0)}


def _finish(store: Store, rec: Recorder, state: DetachedRun, d: DetachedTask,
            marker: dict[str, Any], attempt: dict[str, Any] | None, now: float) -> None:
    m = marker.get("metrics") or {}
    outcome = marker.get("outcome") or "failed"
    error = marker.get("error")
    if attempt is not None:
        cols = ("started_at", "ended_at", "wall", "cpu_user", "cpu_system", "peak_rss",
                "read_bytes", "write_bytes", "exit_code", "host")
        names = {"started_at": "started", "ended_at": "ended"}
        measured = {c: m.get(names.get(c, c)) for c in cols}
        rec.attempt(d.attempt_id or "", state=outcome, error=error,
                    **{k: v for k, v in measured.items() if v is not None})
    if outcome != "succeeded":
        first = (error or "").strip().splitlines()
        reason = f"{outcome.replace('_', ' ')}: {first[-1] if first else 'no details'}"
        rec.task(d.task_id, state=TaskState.FAILED.value, error=reason, finished_at=now)
        return
    cwd = Path(state.cwd)
    try:
        if d.shell_value is not None:
            data = d.shell_value
            files = [Path(o) for o in d.outputs]
        else:
            data = Path(d.workdir or ".", RESULT_FILE).read_bytes()
            files = output_files(cloudpickle.loads(data), cwd)
        store_result(store, rec, state.run_id, d, data, files, now)
    except (CorralError, OSError, ValueError, pickle.UnpicklingError) as exc:
        rec.task(d.task_id, state=TaskState.FAILED.value, finished_at=now,
                 error=f"its result could not be stored: {exc}")
        return
    rec.task(d.task_id, state=TaskState.SUCCEEDED.value, finished_at=now, cached=False,
             error=None)


def store_result(store: Store, rec: Recorder, run_id: str, d: DetachedTask, data: bytes,
                 files: list[Path], now: float) -> None:
    """The results row and artifacts of a finished task (as the engine records them)."""
    rec.task_result(run_id, d.task_id, d.key, d.name, d.attempt_id, data, files, now)


class _Scheduler:
    """The run's batch executor, created on first use (reconcile mostly needs none)."""

    def __init__(self, run: dict[str, Any], state: DetachedRun) -> None:
        self.run, self.state = run, state
        self._ex: BatchExecutor | None = None

    def executor(self) -> BatchExecutor:
        if self._ex is None:
            run = self.run
            ctx = ExecutorContext(run["id"], Path(run["workdir"]) / ".corral" / "work" / run["id"],
                                  Path(run["workdir"]), 1, sys.executable)
            opts = (run.get("executor") or {}).get("options") or {}
            ex = create_executor(self.state.kind, opts, ctx)
            if not isinstance(ex, BatchExecutor):
                raise UsageError(f"executor {self.state.kind!r} of a detached run is not a "
                                 "batch scheduler")
            self._ex = ex
        return self._ex

    def query(self, native_ids: list[str]) -> dict[str, JobStatus] | None:
        """One status query; ``None`` when the scheduler cannot be asked."""
        try:
            return self.executor().query(native_ids)
        except CorralError as exc:
            log.info("detached run %s: status query failed: %s", self.run["id"], exc)
            return None

    def delete(self, native_ids: list[str]) -> None:
        """One cancel command (in this order); jobs already gone are only logged."""
        if not native_ids:
            return
        try:
            self.executor().cancel_jobs(native_ids)
        except CorralError as exc:
            log.warning("detached run %s: could not delete jobs %s: %s", self.run["id"],
                        " ".join(native_ids), exc)

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown()


def _check_jobs(sched: _Scheduler, unknown: list[DetachedTask],
                attempts: dict[str, dict[str, Any]], rec: Recorder, task_state: dict[int, str],
                now: float, lost_after: float) -> list[DetachedTask]:
    """Ask the scheduler (one query) about jobs without markers. Jobs in an error state are
    failed and returned (to be deleted); ended or vanished old ones are failed as lost."""
    asked = [d for d in unknown if d.native_id and d.attempt_id in attempts]
    if not asked:
        return []
    statuses = sched.query([d.native_id for d in asked if d.native_id])
    if statuses is None:
        return []
    stuck: list[DetachedTask] = []
    for d in asked:
        st = statuses.get(d.native_id or "")
        old = now - (attempts[d.attempt_id]["submitted_at"] or now) > lost_after
        if st is not None and st.state is JobState.ERROR_HELD:
            why = (f"job {d.native_id} is stuck in an error state ({st.reason or 'no reason'})"
                   " and never runs; it was deleted with its waiting dependents")
            state, lost = "failed", False
        elif (st is not None and not st.state.terminal) or not old:
            continue
        else:
            why = (f"job {d.native_id} ended {st.state.name} without an exit marker" if st
                   else f"job {d.native_id} vanished from the scheduler without an exit marker")
            state, lost = "lost", True
        if read_marker(Path(d.workdir or ".")) is not None:
            continue  # finished meanwhile: the next reconcile records it
        if not lost:
            stuck.append(d)
        task_state[d.idx] = TaskState.FAILED.value
        rec.task(d.task_id, state=TaskState.FAILED.value, finished_at=now, error=why)
        rec.attempt(d.attempt_id or "", state=state, ended_at=now, error=why)
    return stuck


def task_value(store: Store, key: str) -> Any:
    """A stored result by key (gathers resolved), for callers without an engine."""
    value = cloudpickle.loads(store.load_value(key))
    if isinstance(value, GatherRef):
        return [task_value(store, k) for k in value.keys]
    return value


__all__ = ["DETACHED", "EXPORTED", "prepare_jobs", "reconcile", "submit_detached"]
