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

Retries (``@task(retries=N)``) happen when :func:`reconcile` finds a failed attempt: see
:mod:`corral.engine.detach_retry`. What :func:`reconcile` needs later is kept in
``<work root>/detach.pkl``.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from corral.errors import CorralError, UsageError
from corral.executors import create_executor
from corral.executors.base import Outcome, TaskSpec
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.status import OUTCOME_OF_STATE, JobState, JobStatus
from corral.graph import Future, Node, NodeKind
from corral.resources import Resources
from corral.states import DONE_TASK_STATES, RunState, TaskState
from corral.store import Store
from corral.worker.execute import RESULT_FILE, ResultRef, read_marker

from .detach_retry import (
    BAD_TASK,
    FINISHED_TASK,
    Reconciling,
    attempt_plan,
    cancel_requested,
    claim,
    control_of,
    point_link,
    release,
    resubmit,
    result_link,
    write_state,
)
from .engine import Engine, EngineOptions
from .plan import topological_order
from .prepare import RunConfig, executor_context, prepare_run, recorded_executor, work_root
from .recorder import Recorder
from .specs import make_spec, node_resources
from .values import GatherRef, output_files

if TYPE_CHECKING:
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
    # what a retry needs (class-level defaults: states pickled before retries still load)
    spec_kind: str = "python"
    group: str = ""
    inputs: tuple[str, ...] = ()
    number: int = 1
    """Attempt number of ``attempt_id``."""
    uncounted: int = 0
    """Attempts withdrawn before they ran (resubmitted below a retry); they count neither
    toward retries nor toward resources-by-attempt."""
    retries: int = 0
    plan: tuple[Resources | str, ...] = ()
    """Resources of real attempts 1 .. retries + 1 (a string: why they were refused)."""
    link: str = ""
    """Symbolic link to the current attempt's result that consumers' payloads name."""


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
    kind = kind or cfg.executor
    store = Store.open(cfg.workdir, cfg.db)
    run_id, the_plan, limit = prepare_run(pipeline, params, cfg, store)
    graph = the_plan.graph
    expand = [n.name for n in graph.nodes if n.kind is NodeKind.EXPAND]
    if expand:
        raise UsageError(
            f"detached/exported runs need a static graph, but {expand[0]} maps over each(...) "
            "(known only at run time); run it attached instead"
        )
    options = cfg.executor_options if kind == cfg.executor else {}
    ctx = executor_context(run_id, cfg.workdir.resolve(), limit)
    work_root = ctx.work_root
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
        opts = EngineOptions(jobs=limit, force=list(cfg.force), no_cache=cfg.no_cache)
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
        if engine.state[node.idx] in DONE_TASK_STATES:
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
        return ResultRef(str(links.get(node.idx) or attempt_dir[node.idx] / RESULT_FILE))

    links: dict[int, Path] = {}
    movable: set[int] = set()
    jobs: list[PreparedJob] = []
    now = time.time()
    for idx in order:
        node = graph.nodes[idx]
        if engine.state[idx] in DONE_TASK_STATES or node.kind is NodeKind.GATHER:
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
        task = _detached_task(engine, executor, node, spec, deps, movable)
        if task.link:
            links[idx] = Path(task.link)
        jobs.append(PreparedJob(task, spec, rendered.script, deps))
        engine.set_state(idx, TaskState.RUNNING, attempts=n, started_at=now)
    return jobs


def _detached_task(engine: Engine, executor: BatchExecutor, node: Node, spec: TaskSpec,
                   deps: list[int], movable: set[int]) -> DetachedTask:
    """What reconcile keeps of a submitted task: its job, and what its retries need."""
    workdir = Path(os.path.abspath(spec.workdir))
    task = DetachedTask(
        node.idx, node.name, node.key, engine.task_id[node.idx], node.kind.value, deps,
        spec.attempt_id, str(workdir), spec_kind=spec.kind.value, group=spec.group,
        inputs=tuple(spec.inputs), number=spec.attempt,
    )
    task.retries, task.plan = attempt_plan(node, executor, spec.resources)
    if task.retries or movable & set(deps):  # it may run again: retried, or below a retry
        movable.add(node.idx)
    if node.kind is NodeKind.SHELL and node.shell is not None:
        from .values import shell_value

        task.shell_value = cloudpickle.dumps(shell_value(node.shell))
        task.outputs = [str(Path(engine.plan.cwd, o).resolve()) for o in node.outputs]
    elif node.idx in movable:  # its consumers read its result through a link that follows it
        link = result_link(engine.work_root.resolve(), node.idx)
        point_link(link, workdir / RESULT_FILE)
        task.link = str(link)
    return task


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
    write_state(p.work_root / STATE_FILE, p.state)


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

_FINISHED_TASK = FINISHED_TASK


def load_state(store: Store, run_id: str) -> DetachedRun | None:
    run = store.get_run(run_id)
    path = work_root(Path(run["workdir"]), run["id"]) / STATE_FILE
    try:
        state: DetachedRun = pickle.loads(path.read_bytes())
    except OSError:
        return None
    return state


def reconcile(store: Store, run_id: str, lost_after: float = 120.0) -> dict[str, Any]:
    """Bring a detached (or exported) run's rows up to date from its attempts' exit markers.

    Returns ``{"run_id", "state", "done", "failed", "skipped", "pending", "total"}``. Safe to
    call repeatedly, and from several processes at once: it holds the run's engine claim while
    it works, and a call that finds the claim held by another live process only reads the
    store. Other runs are returned unchanged.

    A failed attempt of a detached run's task with retries left is retried here (next attempt,
    with its resources), and the not yet run tasks below it are resubmitted behind the new job
    (:mod:`corral.engine.detach_retry`). Otherwise the task fails, and a task without a marker
    whose upstream failed (or was skipped) is skipped, its job deleted if the scheduler still
    holds it. The scheduler is asked once about the other jobs without markers (those whose
    upstream tasks all succeeded): one stuck in an error state (Grid Engine ``Eqw``, which
    would hold its dependents forever) is failed and deleted; one that ended without a marker
    (out of memory, timeout, node failure...) fails with that outcome; one the scheduler no
    longer knows ``lost_after`` seconds after submission is lost."""
    run = store.get_run(run_id)
    run_id = run["id"]
    if run["state"] not in (DETACHED, EXPORTED) or load_state(store, run_id) is None:
        return _summary(store, run_id, run["state"])
    if not claim(store, run_id):
        log.info("run %s is being reconciled by another process", run_id)
        return _summary(store, run_id, run["state"])
    try:
        run = store.get_run(run_id)  # as it is now that this process holds the claim
        state = load_state(store, run_id)
        final = run["state"]
        if state is not None and final in (DETACHED, EXPORTED):
            final = _reconcile(store, run, state, lost_after)
    finally:
        release(store, run_id)
    if final in (DETACHED, EXPORTED) and control_of(store, run_id) == "cancel":
        return reconcile(store, run_id, lost_after)  # `corral cancel` came while we held it
    return _summary(store, run_id, final)


def _reconcile(store: Store, run: dict[str, Any], state: DetachedRun,
               lost_after: float) -> str:
    """One pass under the claim; returns the run's state."""
    sched = _Scheduler(run, state)
    try:
        p = Reconciling(store, run, state, sched, lost_after)
        if run.get("control") == "cancel":
            return cancel_requested(p)
        pending = _read_markers(p)
        _skip_below_failures(p, pending)
        unknown = [d for d in pending if p.task_state[d.idx] not in _FINISHED_TASK]
        _check_jobs(p, unknown)
        resubmit(p)
        _skip_below_failures(p, pending)
        p.rec.flush()
        # dependents before their parents: deleting a held parent first would release them
        sched.delete([native for _, native in sorted(p.doomed, key=lambda x: -x[0])])
    finally:
        sched.close()
    final = str(run["state"])
    if all(s in _FINISHED_TASK for s in p.task_state.values()):
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
        if p.task_state[d.idx] in _FINISHED_TASK:
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
            if p.task_state[d.idx] in _FINISHED_TASK:
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


class _Scheduler:
    """The run's batch executor, created on first use (reconcile mostly needs none)."""

    def __init__(self, run: dict[str, Any], state: DetachedRun) -> None:
        self.run, self.state = run, state
        self._ex: BatchExecutor | None = None

    def executor(self) -> BatchExecutor:
        if self._ex is None:
            ex = recorded_executor({**self.run, "executor": {**(self.run.get("executor") or {}),
                                                             "jobs": 1}}, self.state.kind)
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


def task_value(store: Store, key: str) -> Any:
    """A stored result by key (gathers resolved), for callers without an engine."""
    value = cloudpickle.loads(store.load_value(key))
    if isinstance(value, GatherRef):
        return [task_value(store, k) for k in value.keys]
    return value


__all__ = ["DETACHED", "EXPORTED", "prepare_jobs", "reconcile", "submit_detached"]
