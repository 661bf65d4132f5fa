"""Retries of detached runs, applied when :func:`corral.engine.detached.reconcile` runs.

A detached run has no engine, so a failed attempt is only noticed when something reconciles
(``corral status``). The rule is the attached engine's (``Engine._complete``): a retryable
outcome (anything but success and cancellation) is retried while the task's real attempt number
is at most its ``retries``, with the resources its ``resources`` function gives for the next
attempt. Those resources are resolved and validated at submission, one per possible attempt
(:func:`attempt_plan`), so reconcile needs neither the pipeline nor its code.

A retry submits the task's next attempt and resubmits its not yet run downstream chain, each
job depending on the new jobs. A failed element of an array job (a scatter) is resubmitted
alone, as a single job, and several failed elements of one scatter as one array of just those
elements; their dependents are resubmitted waiting for those jobs and for the array's other
unfinished elements (each by its element id on SLURM, ``afterok:123_4``; on Grid
Engine the whole array, the job script checking each element's exit marker). Every element has
its own attempt directory and exit marker, read one by one by reconcile.

The old jobs of that chain never ran (SLURM holds or removed
them, Grid Engine's job scripts refuse to run below a failed parent): their attempts are recorded
``withdrawn`` (they do not count toward retries or resources, as in the attached engine) and
their jobs are deleted. Python tasks read an upstream result through a per-task symbolic link
(:func:`result_link`) that a retry points at the new attempt, so payloads written at submission
stay valid.

Reconcile holds the run's engine claim (:func:`claim`) while it works, so two ``corral status``
at once never submit the same retry twice: the second one only reads the store.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import CorralError
from corral.executors.base import Outcome, TaskKind, TaskSpec
from corral.executors.batch.base import BatchExecutor
from corral.resources import Resources
from corral.states import AttemptState, RunState, TaskState, check_task
from corral.store import Store
from corral.store.rows import plain
from corral.worker.execute import PAYLOAD_FILE, RESULT_FILE
from corral.worker.render import DEFERRED_FILE

from ..prepare import work_root
from ..recorder import Recorder
from ..specs import attempt_env, may_retry, safe_name

if TYPE_CHECKING:
    pass

from .scheduler import Scheduler
from .state import BAD_TASK, FINISHED_TASK, DetachedRun, DetachedTask, point_link, write_state
from .submit import write_rendered

log = logging.getLogger("corral.engine.detached")


@dataclass
class Reconciling:
    """What one reconcile pass reads and changes."""

    store: Store
    run: dict[str, Any]
    state: DetachedRun
    sched: Scheduler
    lost_after: float
    rec: Recorder = field(init=False)
    task_state: dict[int, str] = field(init=False)
    attempts: dict[str, dict[str, Any]] = field(init=False)
    now: float = field(default_factory=time.time)
    retry: list[DetachedTask] = field(default_factory=list)
    """Tasks whose failed attempt is retried in this pass."""
    doomed: list[tuple[int, str]] = field(default_factory=list)
    """Task index and job id of jobs deleted at the end of the pass."""

    def __post_init__(self) -> None:
        self.rec = Recorder(self.store)
        run_id = self.run["id"]
        tasks = {r["id"]: r for r in self.store.tasks(run_id)}
        self.task_state = {d.idx: tasks[d.task_id]["state"] for d in self.state.tasks.values()}
        self.attempts = {a["id"]: plain(a) for a in self.store.attempts(run_id)}

    @property
    def work_root(self) -> Path:
        return work_root(Path(self.run["workdir"]), str(self.run["id"]))

    @property
    def retries_allowed(self) -> bool:
        """Only detached runs: ``corral status`` does not submit jobs for an exported script."""
        return bool(self.run["state"] == RunState.DETACHED.value)

    def settle(self, d: DetachedTask, outcome: Outcome, reason: str) -> None:
        """After a failed attempt (already recorded): retry the task, or fail it."""
        if self.retries_allowed and may_retry(outcome, d.number - d.uncounted, d.retries):
            log.info("detached run %s: retrying %s after %s", self.run["id"], d.name,
                     outcome.value)
            self.retry.append(d)
            return
        self.set_state(d, TaskState.FAILED, error=reason, finished_at=self.now)

    def fail(self, d: DetachedTask, why: str) -> None:
        self.set_state(d, TaskState.FAILED, error=why, finished_at=self.now)

    def set_state(self, d: DetachedTask, new: TaskState, **fields: Any) -> None:
        """The one place a detached task's state changes (checked against the transition
        table of :mod:`corral.states`), recorded with ``fields``."""
        self.task_state[d.idx] = check_task(self.task_state[d.idx], new, d.name).value
        self.rec.task(d.task_id, state=new.value, **fields)

    def save(self) -> None:
        self.rec.flush()
        write_state(self.work_root / "detach.pkl", self.state)


def cancel_requested(p: Reconciling) -> str:
    """``corral cancel`` asked for it: delete the jobs of the attempts still live (those that
    finished were recorded from their markers first) and cancel the unfinished tasks."""
    live = [a["native_id"] for a in p.store.inflight_attempts(p.run["id"]) if a["native_id"]]
    p.sched.delete(live)
    run_id = p.run["id"]
    p.store.mark_cancelled(run_id)
    p.store.update_run(run_id, state=RunState.CANCELLED.value, control="none",
                       finished_at=time.time())
    return RunState.CANCELLED.value


# ---------------------------------------------------------------------- resubmission


@dataclass
class _Job:
    task: DetachedTask
    spec: TaskSpec


def resubmit(p: Reconciling) -> None:
    """Submit the next attempt of every task in ``p.retry`` and resubmit the not yet run tasks
    below them, in dependency order; tasks of one group with the same resources, environment
    and upstream tasks (the failed elements of one scatter, say) as one array job of those
    elements. The new attempts are recorded (and ``detach.pkl`` written) before anything is
    submitted, so a reconcile that dies in between leaves attempts without job ids, which a
    later reconcile fails as lost (and may retry)."""
    if not p.retry:
        return
    chain = _chain(p)
    ex = p.sched.executor()
    jobs: list[_Job] = []
    old: list[str] = []
    for d, cause in chain:
        if any(p.task_state.get(u) in BAD_TASK for u in d.deps):
            continue  # below a task that fails for good: the skip pass takes it
        if cause and d.native_id:
            old.append(d.native_id)
        job = _prepare(p, ex, d, cause)
        if job is not None:
            jobs.append(job)
    p.save()
    p.sched.delete(old[::-1])  # dependents first
    for batch in _batches(ex, jobs):
        # not those whose upstream's resubmission failed just now
        live = [j for j in batch if not any(p.task_state.get(u) in BAD_TASK
                                            for u in j.task.deps)]
        if live:
            _submit(p, ex, live)
    p.save()


def _batches(ex: BatchExecutor, jobs: list[_Job]) -> list[list[_Job]]:
    """The jobs (in dependency order) grouped into submissions, in dependency order: one
    array per group sharing resources, environment and upstream tasks where the scheduler's
    detached mode has arrays (as :func:`~corral.engine.detached.submit.group_units`)."""
    batches: dict[str, list[_Job]] = {}
    for job in jobs:
        spec = job.spec
        key = json.dumps([spec.group, spec.resources.to_dict(), sorted(spec.env.items()),
                          sorted(job.task.deps)], sort_keys=True, default=str)
        batches.setdefault(key if ex.detached_arrays else spec.attempt_id, []).append(job)
    return list(batches.values())


def _chain(p: Reconciling) -> list[tuple[DetachedTask, str]]:
    """The retried tasks (cause ``""``) and their unfinished descendants (cause: the retried
    task above them), in dependency order."""
    children: dict[int, list[int]] = {}
    for d in p.state.tasks.values():
        for u in d.deps:
            children.setdefault(u, []).append(d.idx)
    cause = {d.idx: "" for d in p.retry}
    stack = [d.idx for d in p.retry]
    while stack:
        i = stack.pop()
        for c in children.get(i, []):
            if c not in cause and p.task_state[c] not in FINISHED_TASK:
                cause[c] = cause[i] or p.state.tasks[i].name
                stack.append(c)
    return [(d, cause[d.idx]) for d in p.state.tasks.values() if d.idx in cause]


def _prepare(p: Reconciling, ex: BatchExecutor, d: DetachedTask, cause: str) -> _Job | None:
    """Write the next attempt's payload and script and record it; ``None`` if it cannot be."""
    n = d.number + 1
    uncounted = d.uncounted + (1 if cause else 0)
    real = n - uncounted
    plan = d.plan or (Resources(),)
    res = plan[min(real, len(plan)) - 1]
    if isinstance(res, str):
        p.fail(d, res)
        return None
    try:
        # a shell command rendered on the node is rendered again, from its deferred payload
        deferred = Path(d.workdir, DEFERRED_FILE)
        payload = (deferred if deferred.is_file() else Path(d.workdir, PAYLOAD_FILE)).read_bytes()
    except OSError as exc:
        p.fail(d, f"attempt {n} could not be submitted: {exc}")
        return None
    if cause and d.attempt_id in p.attempts:
        p.rec.attempt(d.attempt_id, state=AttemptState.WITHDRAWN.value, ended_at=p.now,
                      error=f"not run: upstream task {cause} failed and was retried; "
                            f"resubmitted as attempt {n}")
    workdir = p.work_root / f"{d.idx}-{safe_name(d.name)}.{n}"
    spec = TaskSpec(
        attempt_id=f"{p.run['id']}.{d.idx}.{n}", run_id=p.run["id"], task_key=d.key,
        name=d.name, group=d.group or d.name, kind=TaskKind(d.spec_kind), payload=payload,
        resources=res, attempt=n, workdir=workdir, cwd=Path(p.state.cwd),
        env=attempt_env(real, res), inputs=list(d.inputs),
    )
    ex.write_payload(spec)
    d.attempt_id, d.workdir, d.number, d.uncounted = spec.attempt_id, str(workdir), n, uncounted
    d.native_id = None
    if d.link:
        point_link(Path(d.link), workdir / RESULT_FILE)
    row = {"id": spec.attempt_id, "task_id": d.task_id, "run_id": p.run["id"], "number": n,
           "state": AttemptState.SUBMITTED.value, "executor": ex.kind, "workdir": str(workdir),
           "resources": res.to_dict(), "submitted_at": p.now, "native_id": None}
    p.rec.attempt_new(row)
    p.attempts[spec.attempt_id] = dict(row)
    p.set_state(d, TaskState.RUNNING, attempts=n)
    return _Job(d, spec)


def _submit(p: Reconciling, ex: BatchExecutor, jobs: list[_Job]) -> None:
    """Submit one job, or an array of ``jobs`` (which share their upstream tasks)."""
    deps = jobs[0].task.deps
    # an upstream array element: that element alone on SLURM, its whole array on Grid Engine
    # (whose job scripts then check the element's exit marker)
    after = list(dict.fromkeys(
        ex.dependency_id(native) for u in deps
        if p.task_state.get(u) not in FINISHED_TASK
        and (native := p.state.tasks[u].native_id)))
    try:
        rendered = ex.render_job([j.spec for j in jobs],
                                 after=[p.state.tasks[u].workdir for u in deps])
        write_rendered(ex, rendered)
        result = ex.transport.run(ex.submit_argv(rendered.script_path, after),
                                  input=rendered.script if ex.submit_via_stdin else None,
                                  timeout=ex.settings.submit_timeout)
        native = ex.parse_submit(result.stdout)
    except CorralError as exc:
        for job in jobs:
            d = job.task
            why = f"submission of attempt {d.number} failed: {exc}"
            p.rec.attempt(d.attempt_id, state=AttemptState.FAILED.value, ended_at=p.now,
                          error=why)
            p.fail(d, why)
        return
    for i, job in enumerate(jobs, start=1):
        d = job.task
        d.native_id = ex.element_id(native, i) if len(jobs) >= 2 else native
        p.rec.attempt(d.attempt_id, native_id=d.native_id)
        p.attempts[d.attempt_id]["native_id"] = d.native_id
