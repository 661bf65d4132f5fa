"""Derived metrics of a run: per attempt, per task name, per run, the critical path, and advice.

Definitions (all times in seconds, memory in bytes):

* queued = ``started_at - submitted_at``; wall = measured wall time of the attempt;
  CPU = ``cpu_user + cpu_system``.
* CPU efficiency = CPU / (wall x cores requested); memory ratio = peak RSS / memory requested.
* Run wall = first attempt start to last attempt end. CPU hours = sum of CPU / 3600.
  Core-hours requested = sum of (cores x wall) / 3600; run efficiency = CPU hours / core-hours.
* Critical path = longest path through the task graph where each task weighs the wall time of
  all of its attempts (retries delay the tasks downstream too); reused (cached) tasks weigh 0.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from corral.report import units as fmt
from corral.report._data import (
    RunData,
    cores_of,
    cpu_of,
    int_or_none,
    load_run,
    resources_of,
    wall_of,
)
from corral.states import UNCOUNTED_ATTEMPT_STATES, AttemptState
from corral.store.store import Store

MEMORY_SLACK = 0.5
"""Advise less memory when the peak stays below this fraction of the request..."""
MEMORY_MIN_WASTE = 512 * 1024**2
"""...and the unused part is at least this many bytes."""
CORES_SLACK = 0.5
"""Advise fewer cores when the average cores used stay below this fraction of the request."""
WALLTIME_SLACK = 0.25
"""Advise a shorter walltime when the longest attempt used less than this fraction of it."""
WALLTIME_MIN_WASTE = 600
"""...and at least this many seconds were left unused."""
_NOT_FAILED = frozenset({AttemptState.SUCCEEDED, AttemptState.RUNNING, AttemptState.SUBMITTED}
                        | UNCOUNTED_ATTEMPT_STATES)
"""Attempts that do not count as failed: ended well, not ended, or never really ran."""
QUEUE_RATIO = 5.0
"""Advise bigger tasks when they wait this many times longer in the queue than they run."""


@dataclass(frozen=True)
class AttemptMetrics:
    """One attempt with its derived metrics."""

    attempt_id: str
    task_id: int
    task_idx: int
    task: str
    group: str
    number: int
    state: str
    executor: str
    host: str | None
    submitted_at: float | None
    started_at: float | None
    ended_at: float | None
    queued: float | None
    wall: float | None
    cpu: float | None
    cores: int
    cpu_efficiency: float | None
    peak_rss: int | None
    memory_requested: int | None
    memory_ratio: float | None
    walltime_requested: int | None
    read_bytes: int | None
    write_bytes: int | None
    exit_code: int | None

    @property
    def cores_used(self) -> float | None:
        """Average number of cores kept busy (CPU / wall)."""
        if self.cpu is None or not self.wall:
            return None
        return self.cpu / self.wall


@dataclass(frozen=True)
class TaskMetrics:
    """One task of the run: its state, cache status and its last attempt's metrics."""

    task_id: int
    idx: int
    name: str
    group: str
    state: str
    cached: bool
    attempts: int
    duration: float
    """Wall time of all attempts together; 0 for a reused task."""
    last: AttemptMetrics | None
    critical: bool = False


@dataclass(frozen=True)
class GroupMetrics:
    """Aggregates over the tasks sharing a name (``tasks.grp``, e.g. every element of a map)."""

    name: str
    count: int
    succeeded: int
    failed: int
    cached: int
    attempts: int
    wall_mean: float | None
    wall_max: float | None
    wall_total: float
    cpu_mean: float | None
    cpu_total: float
    cores_used_mean: float | None
    cpu_efficiency: float | None
    peak_rss_mean: float | None
    peak_rss_max: int | None
    cores_requested: int
    memory_requested: int | None
    walltime_requested: int | None


@dataclass(frozen=True)
class Recommendation:
    """Advice about a task name whose resource requests are far from what it used."""

    group: str
    kind: str
    """``memory``, ``cores``, ``walltime``, ``out_of_memory``, ``timeout`` or ``queue``."""
    message: str
    requested: float | None = None
    observed: float | None = None
    suggested: float | None = None


@dataclass(frozen=True)
class CriticalPath:
    tasks: list[str]
    """Task names from the first to the last task of the path."""
    indices: list[int]
    length: float
    """Sum of the tasks' durations along the path, in seconds."""


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    pipeline: str
    source: str
    state: str
    executor: str
    params: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    wall: float | None
    n_tasks: int
    states: dict[str, int]
    cache_hits: int
    attempts: int
    retries: int
    failed_attempts: int
    cpu_hours: float
    core_hours_requested: float
    cpu_efficiency: float | None
    peak_rss_max: int | None
    queued_mean: float | None
    hosts: list[str]


@dataclass(frozen=True)
class RunMetrics:
    """Everything `corral status --metrics` and the HTML report show about a run."""

    summary: RunSummary
    groups: list[GroupMetrics]
    recommendations: list[Recommendation]
    critical_path: CriticalPath
    tasks: list[TaskMetrics] = field(repr=False)
    attempts: list[AttemptMetrics] = field(repr=False)

    def to_json(self, details: bool = False) -> dict[str, Any]:
        """JSON-friendly dict; per-task and per-attempt rows only with ``details``."""
        out: dict[str, Any] = {
            "summary": dataclasses.asdict(self.summary),
            "groups": [dataclasses.asdict(g) for g in self.groups],
            "recommendations": [dataclasses.asdict(r) for r in self.recommendations],
            "critical_path": dataclasses.asdict(self.critical_path),
        }
        if details:
            out["tasks"] = [dataclasses.asdict(tm) for tm in self.tasks]
            out["attempts"] = [dataclasses.asdict(a) for a in self.attempts]
        return out


# ---------------------------------------------------------------------------- attempts


def attempt_metrics(attempt: Mapping[str, Any], task: Mapping[str, Any]) -> AttemptMetrics:
    """Derived metrics of one ``attempts`` row (``task`` is its ``tasks`` row)."""
    res = resources_of(attempt, task)
    cores = cores_of(res)
    wall, cpu = wall_of(attempt), cpu_of(attempt)
    peak = int_or_none(attempt.get("peak_rss"))
    mem_req = int_or_none(res.get("memory"))
    sub, start = attempt.get("submitted_at"), attempt.get("started_at")
    return AttemptMetrics(
        attempt_id=str(attempt["id"]),
        task_id=int(task["id"]),
        task_idx=int(task["idx"]),
        task=str(task["name"]),
        group=str(task.get("grp") or task["name"]),
        number=int(attempt.get("number") or 1),
        state=str(attempt.get("state") or "unknown"),
        executor=str(attempt.get("executor") or ""),
        host=attempt.get("host"),
        submitted_at=sub,
        started_at=start,
        ended_at=attempt.get("ended_at"),
        queued=None if sub is None or start is None else max(0.0, float(start) - float(sub)),
        wall=wall,
        cpu=cpu,
        cores=cores,
        cpu_efficiency=cpu / (wall * cores) if cpu is not None and wall else None,
        peak_rss=peak,
        memory_requested=mem_req,
        memory_ratio=peak / mem_req if peak is not None and mem_req else None,
        walltime_requested=int_or_none(res.get("walltime")),
        read_bytes=int_or_none(attempt.get("read_bytes")),
        write_bytes=int_or_none(attempt.get("write_bytes")),
        exit_code=int_or_none(attempt.get("exit_code")),
    )


# ---------------------------------------------------------------------------- critical path


def critical_path(
    durations: Mapping[int, float], edges: Iterable[tuple[int, int]], names: Mapping[int, str]
) -> CriticalPath:
    """Longest path through a DAG whose nodes (task ``idx``) weigh ``durations`` seconds."""
    children: dict[int, list[int]] = defaultdict(list)
    indegree = dict.fromkeys(durations, 0)
    for parent, child in edges:
        if parent in durations and child in durations:
            children[parent].append(child)
            indegree[child] += 1
    best = {n: float(durations[n]) for n in durations}
    previous: dict[int, int] = {}
    ready = [n for n, d in indegree.items() if d == 0]
    while ready:
        node = ready.pop()
        for child in children[node]:
            through = best[node] + float(durations[child])
            if through > best[child] or (through == best[child] and child not in previous):
                best[child] = through
                previous[child] = node
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if not best:
        return CriticalPath([], [], 0.0)
    end = max(best, key=lambda n: (best[n], -n))
    path = [end]
    while path[-1] in previous:
        path.append(previous[path[-1]])
    path.reverse()
    return CriticalPath([names.get(n, str(n)) for n in path], path, best[end])


# ---------------------------------------------------------------------------- groups


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _group_metrics(
    name: str, tasks: list[TaskMetrics], attempts: list[AttemptMetrics]
) -> GroupMetrics:
    done = [a for a in attempts if a.wall is not None]
    walls = [a.wall for a in done if a.wall is not None]
    cpus = [a.cpu for a in attempts if a.cpu is not None]
    used = [a.cores_used for a in attempts if a.cores_used is not None]
    peaks = [a.peak_rss for a in attempts if a.peak_rss is not None]
    core_seconds = sum(a.cores * a.wall for a in done if a.cpu is not None and a.wall)
    mems = [a.memory_requested for a in attempts if a.memory_requested]
    wts = [a.walltime_requested for a in attempts if a.walltime_requested]
    return GroupMetrics(
        name=name,
        count=len(tasks),
        succeeded=sum(1 for tm in tasks if tm.state == "succeeded"),
        failed=sum(1 for tm in tasks if tm.state == "failed"),
        cached=sum(1 for tm in tasks if tm.cached),
        attempts=len(attempts),
        wall_mean=_mean(walls),
        wall_max=max(walls) if walls else None,
        wall_total=sum(walls),
        cpu_mean=_mean(cpus),
        cpu_total=sum(cpus),
        cores_used_mean=_mean(used),
        cpu_efficiency=sum(cpus) / core_seconds if core_seconds and cpus else None,
        peak_rss_mean=_mean([float(p) for p in peaks]),
        peak_rss_max=max(peaks) if peaks else None,
        cores_requested=max((a.cores for a in attempts), default=1),
        memory_requested=max(mems) if mems else None,
        walltime_requested=max(wts) if wts else None,
    )


# ---------------------------------------------------------------------------- advice


def suggest_memory(peak: float) -> int:
    """Peak plus 25 %, rounded up to 512M steps below 4G and to whole G above."""
    target = peak * 1.25
    step = 512 * 1024**2 if target < 4 * 1024**3 else 1024**3
    return int(max(1, math.ceil(target / step)) * step)


def suggest_walltime(longest: float) -> int:
    """Twice the longest attempt (at least 5 minutes more), rounded up to 5 min / 30 min."""
    target = max(2 * longest, longest + 300)
    step = 300 if target < 3600 else 1800
    return int(math.ceil(target / step) * step)


def _walltime_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds < 3600 else fmt.duration(seconds).replace(" ", "")


def _advise_memory(g: GroupMetrics) -> Recommendation | None:
    req, peak = g.memory_requested, g.peak_rss_max
    if not req or peak is None or peak > MEMORY_SLACK * req or req - peak < MEMORY_MIN_WASTE:
        return None
    new = suggest_memory(peak)
    msg = (
        f"{g.name}: requested {fmt.size(req)}, peak {fmt.size(peak)} — "
        f"request {fmt.size(new)} (memory='{fmt.size(new)}')"
    )
    return Recommendation(g.name, "memory", msg, req, peak, new)


def _advise_cores(g: GroupMetrics) -> Recommendation | None:
    used = g.cores_used_mean
    if g.cores_requested < 2 or used is None or used >= CORES_SLACK * g.cores_requested:
        return None
    new = max(1, math.ceil(used * 1.2))
    msg = (
        f"{g.name}: requested {g.cores_requested} cores, used {used:.1f} on average — "
        f"request {new} (cores={new}) or make the task use its cores"
    )
    return Recommendation(g.name, "cores", msg, g.cores_requested, used, new)


def _advise_walltime(g: GroupMetrics) -> Recommendation | None:
    req, longest = g.walltime_requested, g.wall_max
    if not req or longest is None or longest > WALLTIME_SLACK * req:
        return None
    if req - longest < WALLTIME_MIN_WASTE:
        return None
    new = suggest_walltime(longest)
    if new >= req:
        return None
    text = _walltime_text(new)
    msg = (
        f"{g.name}: requested walltime {fmt.duration(req)}, longest attempt "
        f"{fmt.duration(longest)} — request {text} (walltime='{text}') to start sooner"
    )
    return Recommendation(g.name, "walltime", msg, req, longest, new)


def _advise_failures(g: GroupMetrics, attempts: list[AttemptMetrics]) -> list[Recommendation]:
    out: list[Recommendation] = []
    oom = [a for a in attempts if a.state == "out_of_memory"]
    if oom:
        mem = max((a.memory_requested or 0) for a in oom) or None
        at = f" with {fmt.size(mem)}" if mem else ""
        msg = (
            f"{g.name}: {len(oom)} attempt(s) ran out of memory{at} — raise memory, or grow it "
            "per retry: resources=lambda attempt: Resources(memory=f'{2*attempt}G')"
        )
        out.append(Recommendation(g.name, "out_of_memory", msg, mem, len(oom), None))
    late = [a for a in attempts if a.state == "timeout"]
    if late:
        wt = max((a.walltime_requested or 0) for a in late) or None
        limit = f" of {fmt.duration(wt)}" if wt else ""
        msg = f"{g.name}: {len(late)} attempt(s) hit the walltime{limit} — raise walltime"
        out.append(Recommendation(g.name, "timeout", msg, wt, len(late), None))
    return out


def _advise_queue(g: GroupMetrics, attempts: list[AttemptMetrics]) -> Recommendation | None:
    queued = [a.queued for a in attempts if a.queued is not None]
    if len(queued) < 2 or g.wall_mean is None or g.wall_mean >= 60:
        return None
    wait = statistics.fmean(queued)
    if wait < QUEUE_RATIO * max(g.wall_mean, 1.0):
        return None
    msg = (
        f"{g.name}: tasks waited {fmt.duration(wait)} in the queue for {fmt.duration(g.wall_mean)}"
        " of work — batch them into fewer, larger tasks or run them on the local executor"
    )
    return Recommendation(g.name, "queue", msg, None, wait, None)


def recommendations(
    groups: Sequence[GroupMetrics], attempts: Sequence[AttemptMetrics]
) -> list[Recommendation]:
    """Advice lines for task names whose requests are far from their use."""
    by_group: dict[str, list[AttemptMetrics]] = defaultdict(list)
    for a in attempts:
        by_group[a.group].append(a)
    out: list[Recommendation] = []
    for g in groups:
        ok = [a for a in by_group[g.name] if a.state == "succeeded"]
        if ok:
            fitted = _group_metrics(g.name, [], ok)
            for advise in (_advise_memory, _advise_cores, _advise_walltime):
                rec = advise(fitted)
                if rec:
                    out.append(rec)
        out.extend(_advise_failures(g, by_group[g.name]))
        rec = _advise_queue(g, by_group[g.name])
        if rec:
            out.append(rec)
    return out


# ---------------------------------------------------------------------------- run


def _executor_label(executor: Any) -> str:
    if isinstance(executor, Mapping):
        for key in ("profile", "name", "kind", "type"):
            if executor.get(key):
                return str(executor[key])
        return ", ".join(f"{k}={v}" for k, v in executor.items()) or "-"
    return str(executor) if executor else "-"


def _summary(data: RunData, tasks: list[TaskMetrics], attempts: list[AttemptMetrics]) -> RunSummary:
    run = data.run
    starts = [a.started_at for a in attempts if a.started_at is not None]
    ends = [a.ended_at for a in attempts if a.ended_at is not None]
    if starts and ends:
        wall: float | None = max(ends) - min(starts)
    elif run.get("started_at") and run.get("finished_at"):
        wall = float(run["finished_at"]) - float(run["started_at"])
    else:
        wall = None
    cpu = sum(a.cpu for a in attempts if a.cpu is not None)
    core_s = sum(a.cores * a.wall for a in attempts if a.wall is not None and a.cpu is not None)
    peaks = [a.peak_rss for a in attempts if a.peak_rss is not None]
    queued = [a.queued for a in attempts if a.queued is not None]
    return RunSummary(
        run_id=data.run_id,
        pipeline=str(run.get("pipeline") or ""),
        source=str(run.get("source") or ""),
        state=str(run.get("state") or ""),
        executor=_executor_label(run.get("executor")),
        params=dict(run.get("params") or {}),
        created_at=float(run.get("created_at") or 0.0),
        started_at=run.get("started_at"),
        finished_at=run.get("finished_at"),
        wall=wall,
        n_tasks=len(tasks),
        states=dict(Counter(tm.state for tm in tasks).most_common()),
        cache_hits=sum(1 for tm in tasks if tm.cached),
        attempts=len(attempts),
        retries=sum(1 for a in attempts if a.number > 1),
        failed_attempts=sum(1 for a in attempts if a.state not in _NOT_FAILED),
        cpu_hours=cpu / 3600,
        core_hours_requested=core_s / 3600,
        cpu_efficiency=cpu / core_s if core_s else None,
        peak_rss_max=max(peaks) if peaks else None,
        queued_mean=_mean(queued),
        hosts=sorted({a.host for a in attempts if a.host}),
    )


def compute_metrics(data: RunData) -> RunMetrics:
    """Metrics of rows already loaded (see :func:`run_metrics`)."""
    attempts: list[AttemptMetrics] = []
    tasks: list[TaskMetrics] = []
    for task in data.tasks:
        rows = [attempt_metrics(a, task) for a in data.task_attempts(task)]
        attempts.extend(rows)
        cached = bool(task.get("cached"))
        duration = 0.0 if cached else sum(a.wall or 0.0 for a in rows)
        tasks.append(
            TaskMetrics(
                task_id=int(task["id"]), idx=int(task["idx"]), name=str(task["name"]),
                group=str(task.get("grp") or task["name"]), state=str(task["state"]),
                cached=cached, attempts=len(rows), duration=duration,
                last=rows[-1] if rows else None,
            )
        )
    path = critical_path(
        {tm.idx: tm.duration for tm in tasks}, data.edges, {tm.idx: tm.name for tm in tasks}
    )
    on_path = set(path.indices)
    tasks = [dataclasses.replace(tm, critical=tm.idx in on_path) for tm in tasks]
    by_group: dict[str, list[TaskMetrics]] = defaultdict(list)
    attempts_by_group: dict[str, list[AttemptMetrics]] = defaultdict(list)
    for tm in tasks:
        by_group[tm.group].append(tm)
    for a in attempts:
        attempts_by_group[a.group].append(a)
    groups = [_group_metrics(n, ts, attempts_by_group[n]) for n, ts in by_group.items()]
    groups.sort(key=lambda g: -g.wall_total)
    return RunMetrics(
        summary=_summary(data, tasks, attempts),
        groups=groups,
        recommendations=recommendations(groups, attempts),
        critical_path=path,
        tasks=tasks,
        attempts=attempts,
    )


def run_metrics(store: Store, run_id: str) -> RunMetrics:
    """Metrics of a run given its id, a unique id prefix, or ``latest``."""
    return compute_metrics(load_run(store, run_id))
