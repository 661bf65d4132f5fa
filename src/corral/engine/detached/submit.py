"""Submitting a detached run: the not-cached tasks as batch jobs chained with the scheduler's
dependencies, each scatter one array job (:func:`group_units`); the resources of each possible
retry resolved up front (:func:`attempt_plan`)."""

from __future__ import annotations

import functools
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from corral.errors import CorralError, UsageError
from corral.executors import create_executor
from corral.executors.base import TaskKind, TaskSpec
from corral.executors.batch.base import BatchExecutor, RenderedJob
from corral.graph import Future, Node, NodeKind
from corral.model import ShellSpec
from corral.resources import Resources
from corral.states import DONE_TASK_STATES, AttemptState, RunState, TaskState
from corral.store import Store
from corral.worker.execute import RESULT_FILE, ResultRef, ShellPayload
from corral.worker.render import DeferredShell, has_refs

from ..engine import Engine, EngineOptions
from ..plan import topological_order
from ..prepare import RunConfig, executor_context, prepare_run
from ..specs import make_spec, node_resources, node_retries
from ..values import format_command, substitute

if TYPE_CHECKING:
    from corral.graph import Node
    from corral.model import Pipeline

from .state import STATE_FILE, DetachedRun, DetachedTask, point_link, result_link, write_state

log = logging.getLogger("corral.engine.detached")


@dataclass
class PreparedJob:
    task: DetachedTask
    spec: TaskSpec
    deps: list[int]
    """Indexes of the upstream tasks that have jobs (not cached)."""


@dataclass
class PreparedUnit:
    """One submission: a single task, or the elements of a scatter as one array job
    (element ``i``, 1-based, runs ``jobs[i - 1]``)."""

    jobs: list[PreparedJob]
    rendered: RenderedJob
    after: list[int]
    """Positions (in :attr:`Prepared.units`) of the units this one waits for."""

    @property
    def is_array(self) -> bool:
        return len(self.jobs) >= 2

    @property
    def name(self) -> str:
        """The task's name, or the scatter's group for an array."""
        return self.jobs[0].spec.group if self.is_array else self.jobs[0].task.name


@dataclass
class Prepared:
    run_id: str
    store: Store
    executor: BatchExecutor
    engine: Engine
    work_root: Path
    units: list[PreparedUnit]
    """In dependency order."""
    state: DetachedRun

    @property
    def jobs(self) -> list[PreparedJob]:
        return [j for u in self.units for j in u.jobs]


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
        units = group_units(executor, jobs)
        engine.rec.flush()
    except BaseException:
        store.release_run(run_id, state=RunState.FAILED.value, finished_at=time.time(),
                          error="preparing the detached run failed")
        raise
    tasks = {j.task.idx: j.task for j in jobs}
    state = DetachedRun(run_id, str(the_plan.cwd), kind, tasks)
    return Prepared(run_id, store, executor, engine, work_root, units, state)


def _build_jobs(engine: Engine, executor: BatchExecutor, work_root: Path) -> list[PreparedJob]:
    graph = engine.graph
    order, _ = topological_order(graph)
    has_job: set[int] = set()
    attempt_dir: dict[int, Path] = {}
    cached_dir = work_root / "cached"

    def ref(fut: Future, for_shell: bool) -> Any:
        node = fut.node
        if node.kind is NodeKind.SHELL and node.shell is not None:
            from ..values import shell_value

            return shell_value(node.shell)
        if engine.state[node.idx] in DONE_TASK_STATES:
            if for_shell:
                return engine.load_key(node.key)
            path = cached_dir / f"{node.key}.pkl"
            if not path.exists():
                cached_dir.mkdir(parents=True, exist_ok=True)
                path.write_bytes(cloudpickle.dumps(engine.load_key(node.key)))
            return ResultRef(str(path))
        if node.kind is NodeKind.GATHER:
            return [ref(Future(graph.nodes[m]), for_shell) for m in node.members or []]
        # not known until it runs: a shell command using it is rendered on the node
        return ResultRef(str(links.get(node.idx) or attempt_dir[node.idx] / RESULT_FILE))

    links: dict[int, Path] = {}
    movable: set[int] = set()
    jobs: list[PreparedJob] = []
    now = time.time()
    for idx in order:
        node = graph.nodes[idx]
        if engine.state[idx] in DONE_TASK_STATES or node.kind is NodeKind.GATHER:
            continue
        load = functools.partial(ref, for_shell=node.kind is NodeKind.SHELL)
        try:
            kind, payload = (shell_payload(node.shell, load) if node.shell is not None
                             else engine.payloads.payload(node, load))
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
        has_job.add(idx)
        task = _detached_task(engine, executor, node, spec, deps, movable)
        if task.link:
            links[idx] = Path(task.link)
        jobs.append(PreparedJob(task, spec, deps))
        engine.set_state(idx, TaskState.RUNNING, attempts=n, started_at=now)
    return jobs


def shell_payload(spec: ShellSpec, load: Callable[[Future], Any]) -> tuple[TaskKind, bytes]:
    """A shell task's payload: its command line, or, when it takes values of Python tasks that
    have not run yet (:class:`ResultRef`), a :class:`DeferredShell` the job renders when it
    starts (:func:`corral.worker.render.prepare_attempt`)."""
    inputs, params = substitute(spec.inputs, load), substitute(spec.params, load)
    outputs = [str(o) for o in _paths(spec.outputs)]
    if not has_refs([inputs, params]):
        return TaskKind.SHELL, pickle.dumps(
            ShellPayload(format_command(spec, inputs, params), outputs))
    # the engine's own formatting, by reference: the node imports corral.engine.values
    template = ShellSpec(spec.command, None, spec.outputs)
    render = cloudpickle.dumps(functools.partial(format_command, template))
    return TaskKind.SHELL, pickle.dumps(DeferredShell(render, inputs, params, outputs))


def _paths(value: Any) -> list[Any]:
    """The paths of a shell task's ``outputs`` (one, a list or a dict of them), flattened."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in _paths(v)]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _paths(v)]
    return [] if value is None else [value]


def group_units(executor: BatchExecutor, jobs: list[PreparedJob]) -> list[PreparedUnit]:
    """Group ``jobs`` (in topological order) into submissions and render their scripts.

    Tasks of one group (the elements of a ``map``, zip or product) with the same resources,
    environment and upstream jobs form one array job where the scheduler's detached mode
    supports it (:attr:`BatchExecutor.detached_arrays`); a task below waits for the whole
    array. Members share their upstream tasks, so none is above another and the units stay
    in dependency order. Elements whose upstream differ (a map over a map's elements) stay
    single jobs, each waiting for its own upstream."""
    groups: dict[str, list[PreparedJob]] = {}
    for job in jobs:
        key = json.dumps([job.spec.group, job.spec.resources.to_dict(),
                          sorted(job.spec.env.items()), job.deps], sort_keys=True, default=str)
        if not executor.detached_arrays:
            key = str(job.task.idx)  # one job per task
        groups.setdefault(key, []).append(job)
    unit_of: dict[int, int] = {}
    workdir = {j.task.idx: j.task.workdir for j in jobs}
    units: list[PreparedUnit] = []
    for group in groups.values():  # dicts keep insertion order: by each group's first job
        members = sorted(group, key=lambda j: j.task.idx)  # element i runs the i-th task
        after = sorted({unit_of[d] for d in members[0].deps})
        dirs = [workdir[d] for d in members[0].deps]
        rendered = executor.render_job([j.spec for j in members], after=dirs)
        for j in members:
            unit_of[j.task.idx] = len(units)
        units.append(PreparedUnit(members, rendered, after))
    return units


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
        from ..values import shell_value

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


def attempt_row(p: Prepared, job: PreparedJob, native_id: str | None) -> dict[str, Any]:
    """The row of a job's attempt as it is handed to the scheduler."""
    return {
        "id": job.spec.attempt_id, "task_id": job.task.task_id, "run_id": p.run_id,
        "number": job.spec.attempt, "state": AttemptState.SUBMITTED.value, "executor": p.executor.kind,
        "workdir": str(job.task.workdir), "resources": job.spec.resources.to_dict(),
        "submitted_at": time.time(), "native_id": native_id,
    }


def save_state(p: Prepared) -> None:
    write_state(p.work_root / STATE_FILE, p.state)


def write_unit(ex: BatchExecutor, unit: PreparedUnit) -> None:
    """Write a unit's job script (and an array's listing of attempt directories)."""
    job = unit.rendered
    if job.list_path and job.list_text is not None:
        ex.transport.write_bytes(job.list_path, job.list_text.encode())
    if job.array_err:  # the scheduler's own output files of the elements go there
        ex.transport.makedirs(os.path.dirname(job.array_err))
    ex.transport.write_bytes(job.script_path, job.script.encode(), mode=0o755)


def submit_unit(ex: BatchExecutor, unit: PreparedUnit, after: list[str]) -> str:
    """Submit one unit after the jobs ``after``; returns its (array) job id."""
    write_unit(ex, unit)
    script = unit.rendered.script
    result = ex.transport.run(ex.submit_argv(unit.rendered.script_path, after),
                              input=script if ex.submit_via_stdin else None,
                              timeout=ex.settings.submit_timeout)
    return ex.parse_submit(result.stdout)


def submit_detached(pipeline: Pipeline[Any, Any], params: Mapping[str, Any],
                    cfg: RunConfig) -> str:
    """Submit every not-cached task (each scatter one array job) with the scheduler's
    dependencies, and return the run id at once.

    Raises :class:`UsageError` for dynamic scatters and for executors that are not batch
    schedulers. Follow the run with :func:`reconcile` (``corral status``)."""
    p = prepare_jobs(pipeline, params, cfg)
    native: dict[int, str] = {}
    """Job id of each unit submitted (by position)."""
    ex = p.executor
    try:
        for n, unit in enumerate(p.units):
            job_id = submit_unit(ex, unit, [native[u] for u in unit.after])
            native[n] = job_id
            for i, job in enumerate(unit.jobs, start=1):
                job.task.native_id = ex.element_id(job_id, i) if unit.is_array else job_id
                p.engine.rec.attempt_new(attempt_row(p, job, job.task.native_id))
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
    save_state(p)
    final = RunState.DETACHED.value if p.jobs else RunState.SUCCEEDED.value
    p.store.release_run(p.run_id, state=final, started_at=time.time(),
                        **({"finished_at": time.time()} if not p.jobs else {}))
    return p.run_id


# ---------------------------------------------------------------------- reconcile


def attempt_plan(node: Node, executor: BatchExecutor,
                 first: Resources) -> tuple[int, tuple[Resources | str, ...]]:
    """The task's ``retries`` and the resources of its real attempts 1 .. retries + 1.

    A later attempt whose resources the executor refuses is kept as the refusal's text: the
    task fails with it if it ever gets there (the attached engine fails it then, too)."""
    retries = node_retries(node)
    plan: list[Resources | str] = [first]
    for n in range(2, retries + 2):
        try:
            res = node_resources(node, n)
            executor.validate(res)
        except CorralError as exc:
            plan.append(f"attempt {n}: {exc}")
            continue
        plan.append(res)
    return retries, tuple(plan)
