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
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
from corral.worker.render import REQUIRES_FILE, DeferredShell, has_refs

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


@dataclass(frozen=True)
class Wait:
    """What a unit waits for: a whole unit, or one element of an array unit."""

    unit: int
    """Position in :attr:`Prepared.units`."""
    element: int = 0
    """Element (1-based) of an array unit; 0: the whole unit."""


@dataclass
class PreparedUnit:
    """One submission: a single task, or the elements of a scatter as one array job
    (element ``i``, 1-based, runs ``jobs[i - 1]``)."""

    jobs: list[PreparedJob]
    rendered: RenderedJob
    after: list[Wait]
    """What every element waits for."""
    elementwise: int | None = None
    """Position of the array unit whose element ``i`` this array's element ``i`` waits for
    (SLURM ``aftercorr``, Grid Engine ``-hold_jid_ad``): a map over a map's elements."""
    requires: list[str] = field(default_factory=list)
    """Of an element-wise array on a scheduler whose dependencies wait for the end: the
    upstream element's attempt directory of each element, whose marker it checks."""

    @property
    def is_array(self) -> bool:
        return len(self.jobs) >= 2

    @property
    def name(self) -> str:
        """The task's name, or the scatter's group for an array."""
        return self.jobs[0].spec.group if self.is_array else self.jobs[0].task.name

    def dependencies(self, ex: BatchExecutor, job_id: Callable[[int], str],
                     ) -> tuple[list[str], list[str]]:
        """The ids to wait for (``depends_on`` and ``elementwise`` of
        :meth:`BatchExecutor.submit_argv`), given the job id of each unit by position."""
        ids = [job_id(w.unit) if not w.element
               else ex.dependency_id(ex.element_id(job_id(w.unit), w.element))
               for w in self.after]
        corr = [job_id(self.elementwise)] if self.elementwise is not None else []
        return list(dict.fromkeys(ids)), corr


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


@dataclass
class _Group:
    members: list[PreparedJob]
    """Sorted by task index: element ``i`` runs ``members[i - 1]``."""
    upstream: list[int] | None = None
    """Element-wise: the upstream task (an element of one array) of each member."""


def group_units(executor: BatchExecutor, jobs: list[PreparedJob]) -> list[PreparedUnit]:
    """Group ``jobs`` (in topological order) into submissions and render their scripts.

    Tasks of one group (the elements of a ``map``, zip or product) with the same resources,
    environment and upstream jobs form one array job where the scheduler's detached mode
    supports it (:attr:`BatchExecutor.detached_arrays`); a task below waits for the whole
    array, or for its one element. Members share their upstream tasks, so none is above
    another and the units stay in dependency order. The elements of a map over another map's
    elements (element ``i`` needs element ``i`` of one array, and the same other jobs) form an
    array too where the scheduler waits element by element
    (:attr:`BatchExecutor.elementwise_dependency`); elsewhere they stay single jobs, each
    waiting for its own upstream element."""
    groups: dict[str, list[PreparedJob]] = {}
    for job in jobs:
        key = _key(job, job.deps) if executor.detached_arrays else str(job.task.idx)
        groups.setdefault(key, []).append(job)
    found = [_Group(sorted(g, key=lambda j: j.task.idx)) for g in groups.values()]
    if executor.detached_arrays and executor.elementwise_dependency:
        merged = True
        while merged:  # a map over a map over a map: one array each
            found, merged = _merge_elementwise(found)
    return _units(executor, found)


def _key(job: PreparedJob, deps: list[int], *more: object) -> str:
    return json.dumps([job.spec.group, job.spec.resources.to_dict(),
                       sorted(job.spec.env.items()), deps, *more], sort_keys=True, default=str)


def _merge_elementwise(groups: list[_Group]) -> tuple[list[_Group], bool]:
    """Single jobs of one group, each needing one element of the same array (element ``i``
    for the ``i``-th of them, every element) and the same other jobs, become one array."""
    where = {j.task.idx: n for n, g in enumerate(groups) for j in g.members}
    candidates: dict[str, list[tuple[int, PreparedJob, int]]] = {}
    for n, g in enumerate(groups):
        if len(g.members) != 1:
            continue
        job = g.members[0]
        in_arrays = [d for d in job.deps if len(groups[where[d]].members) >= 2]
        if len(in_arrays) == 1:
            up = in_arrays[0]
            key = _key(job, sorted(set(job.deps) - {up}), where[up])
            candidates.setdefault(key, []).append((n, job, up))
    merged: dict[int, _Group] = {}
    gone: set[int] = set()
    for found in candidates.values():
        found.sort(key=lambda c: c[1].task.idx)
        array = groups[where[found[0][2]]].members
        if [c[2] for c in found] != [a.task.idx for a in array]:
            continue  # not element i on element i of the whole array: single jobs
        merged[min(c[0] for c in found)] = _Group([c[1] for c in found], [c[2] for c in found])
        gone |= {c[0] for c in found}
    out = [merged.get(n, g) for n, g in enumerate(groups) if n in merged or n not in gone]
    return out, bool(merged)


def _waits(places: set[Wait], units: list[PreparedUnit]) -> list[Wait]:
    """The waits for these tasks: a whole array when they are all its elements (a gather),
    else the elements (a task using one element of a map)."""
    count = Counter(w.unit for w in places)
    out = {Wait(w.unit) if w.element and count[w.unit] == len(units[w.unit].jobs) else w
           for w in places}
    return sorted(out, key=lambda w: (w.unit, w.element))


def _units(executor: BatchExecutor, groups: list[_Group]) -> list[PreparedUnit]:
    """The groups (in dependency order) as units with their rendered scripts."""
    place: dict[int, Wait] = {}
    """Where each task runs: its unit, and its element if that is an array."""
    workdir = {j.task.idx: j.task.workdir for g in groups for j in g.members}
    units: list[PreparedUnit] = []
    for g in groups:
        first = g.members[0]
        deps = [d for d in first.deps if g.upstream is None or d != g.upstream[0]]
        after = _waits({place[d] for d in deps}, units)
        rendered = executor.render_job([j.spec for j in g.members],
                                       after=[workdir[d] for d in deps])
        unit = PreparedUnit(g.members, rendered, after)
        if g.upstream is not None:
            unit.elementwise = place[g.upstream[0]].unit
            if executor.dependency_on_end:
                unit.requires = [workdir[u] for u in g.upstream]
        array = len(g.members) >= 2
        for i, j in enumerate(g.members, start=1):
            place[j.task.idx] = Wait(len(units), i if array else 0)
        units.append(unit)
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
    for element, upstream in zip(unit.jobs, unit.requires, strict=False):
        # Grid Engine releases element i when upstream element i *ended*: the worker checks
        ex.transport.write_bytes(str(Path(element.task.workdir, REQUIRES_FILE)),
                                 f"{upstream}\n".encode())
    write_rendered(ex, unit.rendered)


def write_rendered(ex: BatchExecutor, job: RenderedJob) -> None:
    """Write a job script, and an array's listing of attempt directories and log folder."""
    if job.list_path and job.list_text is not None:
        ex.transport.write_bytes(job.list_path, job.list_text.encode())
    if job.array_err:  # the scheduler's own output files of the elements go there
        ex.transport.makedirs(os.path.dirname(job.array_err))
    ex.transport.write_bytes(job.script_path, job.script.encode(), mode=0o755)


def submit_unit(ex: BatchExecutor, unit: PreparedUnit, native: dict[int, str]) -> str:
    """Submit one unit after the units it waits for (their job ids by position in
    ``native``); returns its (array) job id."""
    write_unit(ex, unit)
    script = unit.rendered.script
    after, elementwise = unit.dependencies(ex, native.__getitem__)
    result = ex.transport.run(ex.submit_argv(unit.rendered.script_path, after, elementwise),
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
            job_id = submit_unit(ex, unit, native)
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
