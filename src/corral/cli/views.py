"""Tables and text the CLI prints (rich), and their JSON forms."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from corral.resources import format_memory

STATE_STYLE = {
    "succeeded": "green", "cached": "cyan", "running": "yellow", "queued": "blue", "pending": "dim",
    "failed": "bold red", "skipped": "magenta", "cancelled": "red", "paused": "yellow",
    "interrupted": "yellow",
}


def when(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def styled(state: str) -> str:
    return f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"


def print_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def runs_table(console: Console, runs: list[dict[str, Any]]) -> None:
    table = Table(title="Runs", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    # run ids are copied from here: never cut, whatever the width; params wrap instead
    table.add_column("run", no_wrap=True, min_width=22)
    for col in ("pipeline", "state", "tasks", "created", "duration"):
        table.add_column(col, justify="right" if col in ("tasks", "duration") else "left")
    table.add_column("params", ratio=1)
    for r in runs:
        took = (r["finished_at"] or 0) - (r["started_at"] or 0) if r["finished_at"] else None
        params = " ".join(f"{k}={v}" for k, v in (r["params"] or {}).items())
        created = dt.datetime.fromtimestamp(r["created_at"]).strftime("%m-%d %H:%M:%S")
        table.add_row(r["id"], escape(r["pipeline"]), styled(r["state"]), str(r["n_tasks"]),
                      created, duration(took), escape(params[:60]))
    console.print(table)


def last_attempts(attempts: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    last: dict[int, dict[str, Any]] = {}
    for a in attempts:
        if a["task_id"] not in last or a["number"] >= last[a["task_id"]]["number"]:
            last[a["task_id"]] = a
    return last


def task_rows(tasks: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row a task, with its last attempt's figures; a queued task's ``queued`` is the time
    its attempt has waited to start so far."""
    last = last_attempts(attempts)
    rows = []
    now = dt.datetime.now().timestamp()
    for t in tasks:
        a = last.get(t["id"], {})
        queued = now - a["submitted_at"] if t["state"] == "queued" and a.get("submitted_at") else None
        rows.append({
            "queued": queued,
            "name": t["name"], "state": t["state"], "cached": bool(t["cached"]),
            "attempts": t["attempts"], "wall": a.get("wall"), "peak_rss": a.get("peak_rss"),
            "cpu": (a.get("cpu_user") or 0) + (a.get("cpu_system") or 0) if a else None,
            "host": a.get("host"), "native_id": a.get("native_id"), "key": t["key"],
            "error": t["error"],
        })
    return rows


def status_view(console: Console, run: dict[str, Any], rows: list[dict[str, Any]],
                limit: int) -> None:
    console.print(status_renderable(run, rows, limit))


def status_renderable(run: dict[str, Any], rows: list[dict[str, Any]], limit: int,
                      footer: str | None = None) -> Group:
    """The run's summary line, its error, the task table and ``footer`` (for --watch)."""
    took = None
    if run["started_at"]:
        took = (run["finished_at"] or run["heartbeat_at"] or run["started_at"]) - run["started_at"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{styled(k)} {v}" for k, v in sorted(counts.items()))
    parts: list[RenderableType] = [
        Text.from_markup(f"[bold]run {run['id']}[/] {escape(run['pipeline'])} "
                         f"({escape(str(run['source']))}) — {styled(run['state'])}, "
                         f"{duration(took)}; {summary}")
    ]
    if run.get("error"):
        parts.append(Text(str(run["error"]), style="red"))
    parts.append(_task_table(rows if limit <= 0 else rows[:limit]))
    if limit > 0 and len(rows) > limit:
        parts.append(Text(f"... {len(rows) - limit} more tasks; --limit 0 shows all", style="dim"))
    if footer:
        parts.append(Text.from_markup(footer))
    return Group(*parts)


def _task_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(header_style="bold")
    for col in ("task", "state", "tries", "wall", "cpu", "peak mem", "host", "job"):
        table.add_column(col, justify="right" if col in ("tries", "wall", "cpu", "peak mem")
                         else "left")
    for r in rows:
        state = r["state"] + (" (cached)" if r["cached"] and r["state"] != "cached" else "")
        wall = f"queued {duration(r['queued'])}" if r.get("queued") is not None else duration(r["wall"])
        table.add_row(escape(r["name"]), styled(state), str(r["attempts"]), wall,
                      duration(r["cpu"]) if r["cpu"] is not None else "-",
                      format_memory(r["peak_rss"]), r["host"] or "-", r["native_id"] or "-")
    return table


LOG_TAIL_LINES = 200
LOG_TAIL_BYTES = 64 * 1024


def read_log(workdir: str | None, name: str, full: bool = False) -> str | None:
    """An attempt's log: its last :data:`LOG_TAIL_LINES` lines (at most
    :data:`LOG_TAIL_BYTES`, read from the end: a log may be gigabytes), after a line saying
    what was left out; ``full``: all of it (see :func:`copy_log`)."""
    if not workdir:
        return None
    path = Path(workdir) / name
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            start = 0 if full else max(0, size - LOG_TAIL_BYTES)
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    lines = text.splitlines(keepends=True)
    if start:
        lines = lines[1:]  # the first one is cut
    kept = lines if full else lines[-LOG_TAIL_LINES:]
    left = size - sum(len(x.encode(errors="replace")) for x in kept)
    note = f"[… {left} bytes before; --full shows all]\n" if left > 0 else ""
    return note + "".join(kept)


def copy_log(workdir: str | None, name: str, out: Any) -> bool:
    """Copy a whole log to the binary stream ``out`` in blocks (never all in memory); False if
    there is none."""
    if not workdir:
        return False
    try:
        with open(Path(workdir) / name, "rb") as fh:
            first = fh.read(1 << 20)
            if not first:
                return False
            out.write(first)
            while block := fh.read(1 << 20):
                out.write(block)
    except OSError:
        return False
    return True


def params_table(pipe: Any) -> Group:
    """The parameters of a pipeline (`corral run FILE --help`): flag, type, default."""
    from corral.params import signature_params

    doc = (pipe.func.__doc__ or "").strip().splitlines()
    head = Text(f"Pipeline {pipe.name}" + (f": {doc[0]}" if doc else ""), style="bold")
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("parameter", "type", "default"):
        table.add_column(col)
    for name, (typ, default) in signature_params(pipe).items():
        flag = f"--{name}" + (f" / --no-{name}" if typ is bool else "")
        tname = typ.__name__ if isinstance(typ, type) else str(typ).replace("typing.", "")
        shown = "(required)" if default is inspect.Parameter.empty else repr(default)
        table.add_row(escape(flag), escape(tname), escape(shown))
    return Group(head, table)
