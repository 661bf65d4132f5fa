"""What the dashboard's pages show, computed from a :class:`~corral.store.Store`: the runs list (a
filtered page, with each run's progress) and one run (its report context, the same figures and
tables as ``corral report``; ``why`` for a task; the lineage of an output).

Plain functions from the store to dicts for the templates; the routes are in :mod:`.app`.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import CorralError, UsageError
from corral.report import load_run, report_context, units
from corral.report.metrics import compute_metrics
from corral.states import TERMINAL_RUN_STATES, RunState, TaskState
from corral.store.listing import RunFilter
from corral.store.store import Store

PAGE_SIZE = 50
ENDED_TASK_STATES = frozenset({TaskState.SUCCEEDED, TaskState.CACHED, TaskState.FAILED,
                               TaskState.SKIPPED, TaskState.CANCELLED})
LIVE_RUN_STATES = frozenset({RunState.PENDING, RunState.RUNNING, RunState.PAUSED})
"""Runs whose pages follow them with server-sent events."""
ENDED_RUNS_CACHED = 32
"""Ended runs whose page parts are kept in memory."""
CONTROLS = {"pause": "Pause", "resume": "Resume", "cancel": "Cancel"}
SHOWN_FIGURES = ("timeline", "graph")
"""The report's figures the run page draws (the distributions are the HTML report's only)."""


@dataclass(frozen=True)
class ListQuery:
    """The runs list's query string, checked."""

    filter: RunFilter
    page: int

    @classmethod
    def parse(cls, params: Mapping[str, str], states: Sequence[str]) -> ListQuery:
        known = {s.value for s in RunState}
        bad = [s for s in states if s not in known]
        if bad:
            raise UsageError(f"unknown run state {bad[0]!r}; use one of {', '.join(sorted(known))}")
        raw = params.get("page", "1") or "1"
        if not raw.isdigit() or int(raw) < 1:
            raise UsageError(f"page must be a whole number from 1, not {raw!r}")
        f = RunFilter(states=tuple(states), owner=params.get("owner", "").strip(),
                      pipeline=params.get("pipeline", "").strip(), search=params.get("q", "").strip())
        return cls(f, int(raw))


def executor_label(executor: Any) -> str:
    if isinstance(executor, Mapping):
        return str(executor.get("kind") or executor.get("name") or "-")
    return str(executor or "-")


def progress(run: Mapping[str, Any], counts: Mapping[str, int], now: float) -> dict[str, Any]:
    """The live part of a run's row: state, tasks ended of all, duration so far."""
    total = max(int(run.get("n_tasks") or 0), sum(counts.values()))
    ended = sum(n for s, n in counts.items() if s in ENDED_TASK_STATES)
    start = run.get("started_at") or run.get("created_at")
    end = run.get("finished_at") or (now if run["state"] in LIVE_RUN_STATES else None)
    seconds = None if start is None or end is None else float(end) - float(start)
    return {
        "id": run["id"], "state": run["state"], "done": ended, "total": total,
        "failed": counts.get(TaskState.FAILED, 0), "cached": counts.get(TaskState.CACHED, 0),
        "percent": round(100 * ended / total) if total else 0,
        "duration": seconds, "duration_text": units.duration(seconds),
    }


def runs_list(store: Store, q: ListQuery) -> dict[str, Any]:
    """The page of runs of ``q`` with each run's progress, the filters' choices and paging."""
    rows, total = store.runs_page(q.filter, PAGE_SIZE, (q.page - 1) * PAGE_SIZE)
    counts = store.task_counts(r["id"] for r in rows)
    now = time.time()
    runs = []
    for r in rows:
        runs.append({**r, "executor_label": executor_label(r["executor"]),
                     "live": progress(r, counts.get(r["id"], {}), now)})
    pages = max(1, -(-total // PAGE_SIZE))
    return {"runs": runs, "total": total, "page": q.page, "pages": pages, "filter": q.filter,
            "facets": store.run_facets(), "states": [s.value for s in RunState],
            "following": any(r["state"] in LIVE_RUN_STATES for r in rows)}


def runs_snapshot(store: Store, run_ids: Sequence[str]) -> dict[str, Any]:
    """The live part of the listed runs, for the list's event stream."""
    found = []
    for run_id in run_ids:
        try:
            found.append(store.get_run(run_id))
        except CorralError:
            continue
    counts = store.task_counts(run_ids)
    now = time.time()
    live = [progress(r, counts.get(r["id"], {}), now) for r in found]
    return {"runs": live, "following": any(r["state"] in LIVE_RUN_STATES for r in live)}


def run_snapshot(store: Store, run_id: str) -> dict[str, Any]:
    run = store.get_run(run_id)
    counts = store.task_counts([run["id"]]).get(run["id"], {})
    return {**progress(run, counts, time.time()), "counts": counts,
            "control": run["control"], "ended": run["state"] in TERMINAL_RUN_STATES}


def controls(state: str) -> list[str]:
    """The actions a run in ``state`` offers."""
    if state in TERMINAL_RUN_STATES:
        return []
    out = ["resume"] if state == RunState.PAUSED else ["pause"] if state == RunState.RUNNING else []
    return [*out, "cancel"]


def run_page(store: Store, run_id: str) -> dict[str, Any]:
    """Everything the run page shows; the figures and tables are the HTML report's."""
    row = store.get_run(run_id)
    if row["state"] in TERMINAL_RUN_STATES:  # an ended run no longer changes: drawn once
        ctx = ended_run_parts(store, row["id"], row["state"], row["finished_at"])
    else:
        ctx = run_parts(store, row["id"])
    run = ctx["run"]
    counts = store.task_counts([run["id"]]).get(run["id"], {})
    return {**ctx, "executor_label": executor_label(run.get("executor")),
            "live": progress(run, counts, time.time()), "controls": controls(str(run["state"])),
            "following": run["state"] in LIVE_RUN_STATES}


def run_parts(store: Store, run_id: str) -> dict[str, Any]:
    """The report's context of a run (figures, tables, failures), its outputs and task names."""
    data = load_run(store, run_id)
    ctx = report_context(data, compute_metrics(data), figures=SHOWN_FIGURES)
    outputs = sorted({str(a["path"]) for a in store.artifacts(data.run_id)
                      if a.get("kind") == "file" and a.get("path")})
    return {**ctx, "outputs": outputs[:500], "task_names": sorted({str(t["name"]) for t in data.tasks})[:2000]}


@functools.lru_cache(maxsize=ENDED_RUNS_CACHED)
def ended_run_parts(store: Store, run_id: str, state: str, finished_at: float | None) -> dict[str, Any]:
    """:func:`run_parts` of an ended run, kept for the next view (keyed by its end, so a
    resumed and ended again run is drawn again)."""
    return run_parts(store, run_id)


def explain(store: Store, run_id: str, task: str) -> tuple[Any, str | None]:
    """``corral why`` of a task of the run: (explanation, None) or (None, the error line)."""
    from corral.report.compare import explain_task

    try:
        return explain_task(store, run_id, task), None
    except CorralError as exc:
        return None, str(exc)


def lineage_of(store: Store, path: str) -> tuple[Any, str | None]:
    """The lineage of an output file: (tree, None) or (None, the error line)."""
    from corral.report.lineage import lineage

    try:
        return lineage(store, path), None
    except CorralError as exc:
        return None, str(exc)


def run_view(store: Store, workdir: Path, run_id: str, why: str = "", lineage: str = "",
             done: str = "") -> dict[str, Any]:
    """The run page's context (``corral ui``'s and a gateway pipeline job's): :func:`run_page`
    with ``why`` of a task and the lineage of an output (a path relative to ``workdir``)."""
    ctx = run_page(store, run_id)
    extra: dict[str, Any] = {"why": why, "lineage": lineage, "explanation": None, "why_error": None,
                             "tree": None, "lineage_error": None, "done": CONTROLS.get(done, "")}
    if why:
        extra["explanation"], extra["why_error"] = explain(store, ctx["run"]["id"], why)
    if lineage:
        extra["tree"], extra["lineage_error"] = lineage_of(store, str(workdir / lineage))
    return {**ctx, **extra}


def report_download(store: Store, run_id: str) -> tuple[bytes, str]:
    """The run's HTML report (``corral report``) and its download name."""
    from corral.report.html import write_report

    with tempfile.TemporaryDirectory(prefix="corral-ui-") as tmp:
        rid = str(store.get_run(run_id)["id"])
        return write_report(store, rid, Path(tmp) / "report.html").read_bytes(), f"corral-{rid}.html"


def crate_download(store: Store, run_id: str) -> tuple[bytes, str]:
    """The run's Workflow Run RO-Crate as a zip (``corral export --format ro-crate``) and its name."""
    from corral.report.rocrate import export_ro_crate

    with tempfile.TemporaryDirectory(prefix="corral-ui-") as tmp:
        rid = str(store.get_run(run_id)["id"])
        return export_ro_crate(store, rid, Path(tmp) / "crate.zip").read_bytes(), f"corral-{rid}-ro-crate.zip"
