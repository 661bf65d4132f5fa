"""Tables and text the CLI prints (rich), and their JSON forms."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .layout import Column, show_table

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


def state_text(state: str, shown: str | None = None) -> Text:
    return Text(shown or state, style=STATE_STYLE.get(state, ""))


def print_json(console: Console, data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


RUN_COLUMNS = (
    Column("run"), Column("state"), Column("pipeline", give=3), Column("tasks", give=4, right=True),
    Column("created", give=6), Column("duration", give=5, right=True),
    Column("params", give=9, cut=30),
)
"""``corral runs``: run ids and states never give way; the creation time is the run id's own
prefix, so it goes early."""


def runs_table(console: Console, runs: Sequence[Mapping[str, Any]], wide: bool = False,
               tsv: bool = False) -> None:
    rows = []
    for r in runs:
        took = (r["finished_at"] or 0) - (r["started_at"] or 0) if r["finished_at"] else None
        params = " ".join(f"{k}={v}" for k, v in (r["params"] or {}).items())
        created = dt.datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([Text(r["id"]), state_text(r["state"]), Text(r["pipeline"]),
                     Text(str(r["n_tasks"])), Text(created), Text(duration(took)),
                     Text(params or "-")])
    show_table(console, RUN_COLUMNS, rows, wide=wide, tsv=tsv)


def last_attempts(attempts: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    last: dict[int, Mapping[str, Any]] = {}
    for a in attempts:
        if a["task_id"] not in last or a["number"] >= last[a["task_id"]]["number"]:
            last[a["task_id"]] = a
    return last


def task_rows(tasks: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]]
              ) -> list[dict[str, Any]]:
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
