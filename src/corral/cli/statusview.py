"""``corral status``: a run's summary line and its task table, in a terminal (also refreshed by
``--watch``), as plain text when piped, or as TSV.

Task names and states are never wrapped or cut (a name is copied into ``corral logs RUN
NAME``). A run with more tasks than ``--limit`` shows each map as one row, ``measure[0..999]``
with its counts by state, followed by its failed members by name."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.text import Text

from corral.resources import format_memory

if TYPE_CHECKING:
    from corral.store import Store
from corral.store.rows import RunRow

from . import layout, views
from .layout import Column
from .views import STATE_STYLE, duration, state_text, styled

TASK_COLUMNS = (
    Column("task"), Column("state"), Column("tries", give=4, right=True),
    Column("wall", give=2, right=True), Column("cpu", give=5, right=True),
    Column("peak mem", give=3, right=True), Column("host", give=7), Column("job", give=6),
)
"""Host and job id give way first at a narrow width, then cpu, tries, peak memory, wall."""

MAP_MEMBER = re.compile(r"^(?P<base>.+)\[(?P<index>\d+)\]$")
STATE_ORDER = ("failed", "running", "queued", "pending", "succeeded", "cached", "skipped",
               "cancelled")
GROUPED_NOTE = ("maps grouped (tries, cpu: totals; wall, peak mem: the largest); "
                "--limit 0 lists every task")


def status_view(console: Console, run: Mapping[str, Any], rows: list[dict[str, Any]], limit: int,
                wide: bool = False, tsv: bool = False) -> None:
    """Print the status of ``run``: see the module's docstring. TSV lists every task."""
    if tsv:
        layout.show_table(console, TASK_COLUMNS, [task_cells(r) for r in rows], tsv=True)
    elif layout.interactive(console):
        console.print(status_renderable(console, run, rows, limit, wide=wide), crop=False)
    else:
        head = [_summary(run, rows).plain] + ([str(run["error"])] if run.get("error") else [])
        console.file.write("".join(f"{line}\n" for line in head))
        cells, note = display_rows(rows, limit)
        layout.show_table(console, TASK_COLUMNS, cells, note=note)


def status_renderable(console: Console, run: Mapping[str, Any], rows: list[dict[str, Any]],
                      limit: int, footer: str | None = None, wide: bool = False) -> Group:
    """The run's summary line, its error, the task table fitted to ``console`` and ``footer``
    (for --watch)."""
    parts: list[RenderableType] = [_summary(run, rows)]
    if run.get("error"):
        parts.append(Text(str(run["error"]), style="red"))
    cells, note = display_rows(rows, limit)
    parts.append(layout.fitted_table(console, TASK_COLUMNS, cells, wide, note))
    if footer:
        parts.append(Text.from_markup(footer))
    return Group(*parts)


def _summary(run: Mapping[str, Any], rows: list[dict[str, Any]]) -> Text:
    took = None
    if run["started_at"]:
        took = (run["finished_at"] or run["heartbeat_at"] or run["started_at"]) - run["started_at"]
    counts = Counter(r["state"] for r in rows)
    summary = ", ".join(f"{styled(k)} {v}" for k, v in sorted(counts.items()))
    return Text.from_markup(f"[bold]run {run['id']}[/] {escape(run['pipeline'])} "
                            f"({escape(str(run['source']))}) — {styled(run['state'])}, "
                            f"{duration(took)}; {summary}")


def display_rows(rows: list[dict[str, Any]], limit: int) -> tuple[list[list[Text]], str | None]:
    """The table's rows and the note under it: every task while there are at most ``limit``
    (or ``limit`` is 0), else maps grouped and the rows cut at ``limit``."""
    if limit <= 0 or len(rows) <= limit:
        return [task_cells(r) for r in rows], None
    members: dict[str, list[dict[str, Any]]] = {}
    order: list[str | dict[str, Any]] = []
    for r in rows:
        m = MAP_MEMBER.match(r["name"])
        if m is None:
            order.append(r)
            continue
        if m["base"] not in members:
            members[m["base"]] = []
            order.append(m["base"])
        members[m["base"]].append(r)
    out: list[list[Text]] = []
    for item in order:
        group = members[item] if isinstance(item, str) else [item]
        if len(group) == 1:
            out.append(task_cells(group[0]))
            continue
        out.append(group_cells(str(item), group))
        out += [task_cells(r) for r in group if r["state"] == "failed"]  # for `corral logs`
    if len(out) > limit:
        more = len(out) - limit
        rows_left = f"{more} more row" + ("s" if more > 1 else "")
        return out[:limit], f"... {rows_left}; --limit 0 lists every task"
    return out, GROUPED_NOTE


def task_cells(r: dict[str, Any]) -> list[Text]:
    state = r["state"] + (" (cached)" if r["cached"] and r["state"] != "cached" else "")
    wall = f"queued {duration(r['queued'])}" if r.get("queued") is not None else duration(r["wall"])
    return [Text(r["name"]), state_text(r["state"], state), Text(str(r["attempts"])), Text(wall),
            Text(duration(r["cpu"]) if r["cpu"] is not None else "-"),
            Text(format_memory(r["peak_rss"])), Text(r["host"] or "-"), Text(r["native_id"] or "-")]


def group_cells(base: str, group: list[dict[str, Any]]) -> list[Text]:
    """One row for the members of a map: ``base[first..last]``, a line per state with its
    count, total tries and cpu, the longest wall time and the largest peak memory."""
    index = sorted(int(m["index"]) for r in group if (m := MAP_MEMBER.match(r["name"])))
    counts = Counter(r["state"] for r in group)
    states = sorted(counts, key=lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else 99)
    state = Text("\n").join(Text(f"{counts[s]} {s}", style=STATE_STYLE.get(s, "")) for s in states)
    walls = [r["wall"] for r in group if r["wall"] is not None]
    cpus = [r["cpu"] for r in group if r["cpu"] is not None]
    peaks = [r["peak_rss"] for r in group if r["peak_rss"] is not None]
    hosts = {r["host"] for r in group if r["host"]}
    host = next(iter(hosts)) if len(hosts) == 1 else f"{len(hosts)} hosts" if hosts else "-"
    return [Text(f"{base}[{index[0]}..{index[-1]}]"), state,
            Text(str(sum(r["attempts"] for r in group))),
            Text(duration(max(walls)) if walls else "-"), Text(duration(sum(cpus)) if cpus else "-"),
            Text(format_memory(max(peaks)) if peaks else "-"), Text(host), Text("-")]


def snapshot(store: Store, run_id: str) -> tuple[RunRow, list[dict[str, Any]]]:
    """A run (reconciled first: see :func:`corral.engine.lifecycle.reconcile`) and its task
    rows."""
    from corral.engine.lifecycle import reconcile

    run_row = reconcile(store, run_id)
    return run_row, views.task_rows(store.tasks(run_row["id"]), store.attempts(run_row["id"]))
