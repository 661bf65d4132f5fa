"""`corral report RUN -o report.html`: one self-contained HTML file (Jinja2 + Plotly).

Sections: summary and environment, advice, timeline of attempts, critical path, distributions per
task name, table per task name, table of tasks, failed tasks with log tails, pipeline graph.
Plotly's JavaScript is inlined once, so the file opens offline and can be attached anywhere.
Large runs stay readable and small: the timeline turns into a concurrency chart, the task table is
capped, and the graph is collapsed to task names.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import UsageError
from corral.optional import require
from corral.report import _figures
from corral.report import units as fmt
from corral.report._data import RunData, load_run
from corral.report.metrics import RunMetrics, TaskMetrics, compute_metrics
from corral.store.store import Store

MAX_TABLE_ROWS = 500
"""Tasks listed in the task table; failed and critical tasks first, then the longest."""
MAX_FAILED_SHOWN = 25
LOG_TAIL_LINES = 40
LOG_TAIL_BYTES = 16 * 1024
ERROR_TAIL_LINES = 30
FIGURES = ("timeline", "distributions", "graph")
"""The report's Plotly figures, by name (``report_context(..., figures=)``)."""


@dataclass(frozen=True)
class LogTail:
    name: str
    text: str


@dataclass(frozen=True)
class FailedTask:
    name: str
    state: str
    attempts: int
    error: str
    logs: list[LogTail]
    host: str | None
    exit_code: int | None
    workdir: str | None


def tail_file(path: Path, lines: int = LOG_TAIL_LINES, limit: int = LOG_TAIL_BYTES) -> str | None:
    """The last ``lines`` lines of a text file (reading at most ``limit`` bytes), or None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            data = fh.read()
    except OSError:
        return None
    text = data.decode("utf-8", "replace")
    kept = text.splitlines()[-lines:]
    cut = size > limit or len(text.splitlines()) > lines
    return ("…\n" if cut else "") + "\n".join(kept)


def _tail_text(text: str | None, lines: int) -> str:
    rows = (text or "").strip().splitlines()
    return "\n".join((["…"] if len(rows) > lines else []) + rows[-lines:])


def common_errors(data: RunData, limit: int = 10) -> list[tuple[str, int, str]]:
    """The most frequent last lines of failed tasks' errors: (line, count, example task)."""
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for task in data.tasks:
        if task["state"] != "failed":
            continue
        attempts = data.task_attempts(task)
        error = (attempts[-1].get("error") if attempts else None) or task.get("error") or ""
        lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
        line = lines[-1][:200] if lines else "(no error recorded)"
        counts[line] += 1
        example.setdefault(line, str(task["name"]))
    return [(line, n, example[line]) for line, n in counts.most_common(limit)]


def failed_tasks(data: RunData, limit: int = MAX_FAILED_SHOWN) -> tuple[list[FailedTask], int]:
    """Failed tasks with the error and log tails of their last attempt, and how many failed."""
    failed = [t for t in data.tasks if t["state"] == "failed"]
    out = []
    for task in failed[:limit]:
        attempts = data.task_attempts(task)
        last = attempts[-1] if attempts else {}
        logs = []
        workdir = last.get("workdir")
        for name in ("stderr.log", "stdout.log"):
            text = tail_file(Path(workdir) / name) if workdir else None
            if text:
                logs.append(LogTail(name, text))
        error = last.get("error") or task.get("error") or ""
        out.append(FailedTask(
            name=str(task["name"]), state=str(last.get("state") or task["state"]),
            attempts=len(attempts), error=_tail_text(error, ERROR_TAIL_LINES), logs=logs,
            host=last.get("host"), exit_code=last.get("exit_code"), workdir=workdir,
        ))
    return out, len(failed)


def table_tasks(m: RunMetrics, limit: int = MAX_TABLE_ROWS) -> list[TaskMetrics]:
    """All tasks in graph order when they fit; else failed, critical, then longest first."""
    if len(m.tasks) <= limit:
        return list(m.tasks)

    def rank(tm: TaskMetrics) -> tuple[int, int, float]:
        return (tm.state != "failed", not tm.critical, -tm.duration)

    return sorted(sorted(m.tasks, key=rank)[:limit], key=lambda tm: tm.idx)


def _environment(env: dict[str, Any] | None) -> dict[str, Any]:
    env = dict(env or {})
    packages = env.pop("packages", None) or {}
    container = env.get("container")
    rows = [
        ("Python", f"{env['python']} ({env.get('implementation', 'CPython')})"
         if env.get("python") else "-"),
        ("Platform", env.get("platform", "-")),
        ("Host", env.get("host", "-")),
        ("CPUs", env.get("cpu_count", "-")),
        ("Memory", fmt.size(env.get("memory"))),
        ("Container", f"{container.get('runtime')}: {container.get('image') or 'image unknown'}"
         if isinstance(container, dict) else "none"),
        ("Corral", env.get("corral") or "-"),
    ]
    return {"rows": [(k, str(v)) for k, v in rows], "packages": sorted(packages.items()),
            "recorded": bool(env)}


def _params(params: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for k, v in params.items():
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        out.append((str(k), text if len(text) <= 200 else text[:199] + "…"))
    return out


def report_context(data: RunData, m: RunMetrics, *, figures: Collection[str] = FIGURES) -> dict[str, Any]:
    """Everything the template shows, computed from the rows of one run. ``figures`` names the
    Plotly figures to build (of :data:`FIGURES`; building them is most of the time): the others
    are None, as are their notes."""
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        raise UsageError(f"unknown report figure {unknown[0]!r}; use some of {', '.join(FIGURES)}")
    timeline, timeline_note = _figures.timeline_figure(m) if "timeline" in figures else (None, None)
    graph, graph_note = _figures.graph_figure(m, data.edges) if "graph" in figures else (None, None)
    failed, n_failed = failed_tasks(data)
    rows = table_tasks(m)
    durations = {tm.name: tm.duration for tm in m.tasks}
    return {
        "m": m, "s": m.summary, "run": data.run, "states": state_counts(m.summary.states),
        "params": _params(m.summary.params),
        "environment": _environment(data.run.get("environment")),
        "figures": {
            "timeline": timeline,
            "distributions": _figures.distributions_figure(m) if m.attempts and "distributions" in figures else None,
            "graph": graph,
        },
        "timeline_note": timeline_note, "graph_note": graph_note,
        "critical": [(name, durations.get(name, 0.0)) for name in m.critical_path.tasks],
        "table": rows, "table_note": _table_note(len(rows), len(m.tasks)),
        "failed": failed, "n_failed": n_failed, "errors": common_errors(data),
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "timezone": _figures.timeline_clock(m).zone,
    }


def _table_note(shown: int, total: int) -> str | None:
    if shown >= total:
        return None
    return (
        f"Showing {shown:,} of {total:,} tasks: failed and critical-path tasks, then the longest. "
        "All tasks: corral status RUN --metrics --json."
    )


def render_html(data: RunData, m: RunMetrics) -> str:
    """The report as an HTML string."""
    import jinja2

    get_plotlyjs = require("plotly.offline", "the HTML report", None).get_plotlyjs

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("corral.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["duration"] = fmt.duration
    env.filters["size"] = fmt.size
    env.filters["percent"] = fmt.percent
    env.filters["hours"] = fmt.hours
    env.filters["timestamp"] = fmt.timestamp
    template = env.get_template("report.html.j2")
    plotly_js = get_plotlyjs().replace("</script", "<\\/script")
    return template.render(plotly_js=plotly_js, **report_context(data, m))


def write_report(store: Store, run_id: str, path: str | Path) -> Path:
    """Write the HTML report of a run (id, unique prefix or ``latest``) to ``path``."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{target} is a directory; give a file name such as {target}/report.html")
    data = load_run(store, run_id)
    html = render_html(data, compute_metrics(data))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        raise UsageError(f"cannot write the report to {target}: {exc.strerror}; "
                         "choose another path with -o") from exc
    return target


def state_counts(states: dict[str, int]) -> Sequence[tuple[str, int]]:
    order = ["succeeded", "cached", "failed", "running", "queued", "pending", "cancelled", "skipped"]
    return sorted(states.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)
