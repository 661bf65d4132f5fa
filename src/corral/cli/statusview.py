"""``corral status``: a run's summary line and its task table, in a terminal (also refreshed by
``--watch``), as plain text when piped, or as TSV.

Task names and states are never wrapped or cut (a name is copied into ``corral logs RUN
NAME``). A run with more tasks than ``--limit`` shows each map as one row, ``measure[0..999]``
with its counts by state, followed by its failed members by name."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.text import Text

from corral.resources import format_memory

if TYPE_CHECKING:
    from corral.store.rows import AttemptRow, TaskRow

from . import layout, views
from .layout import Column
from .views import STATE_STYLE, duration, state_text, styled


class TaskSource(Protocol):
    """What a big run's status reads: :class:`corral.store.Store`, or the SQLite reader of an
    ended run (:class:`corral.store.reader.SqliteReader`)."""

    def task_groups(self, run_id: str) -> list[dict[str, Any]] | None: ...

    def tasks_at(self, run_id: str, idxs: Iterable[int] = (), failed_in: Iterable[str] = ()
                 ) -> tuple[list[TaskRow], list[AttemptRow]]: ...


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
                "--offset 0 lists the tasks one by one, --limit at a time")
MORE_NOTE = "... {more} more row{s}; --offset 0 lists the tasks one by one, --limit at a time"


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


def counted_in_sql(run: Mapping[str, Any], limit: int) -> bool:
    """Whether the table of ``run`` is grouped and counted in SQL: it has more tasks than
    ``limit`` (0: every task is listed, so they are loaded)."""
    return 0 < limit < (run["n_tasks"] or 0)


def big_status_view(console: Console, store: TaskSource, run: Mapping[str, Any], limit: int,
                    wide: bool = False) -> None:
    """:func:`status_view` of a run with more tasks than ``limit`` (see :func:`big_run_rows`)."""
    counts, cells, note = big_run_rows(store, str(run["id"]), limit)
    _show(console, run, counts, cells, note, wide)


def _show(console: Console, run: Mapping[str, Any], counts: Counter[str],
          cells: list[list[Text]], note: str | None, wide: bool) -> None:
    """The summary line of ``run`` (its tasks' ``counts``), its error and the table."""
    if layout.interactive(console):
        console.print(_big_view(console, run, counts, cells, note, wide), crop=False)
        return
    head = [_summary(run, counts).plain] + ([str(run["error"])] if run.get("error") else [])
    console.file.write("".join(f"{line}\n" for line in head))
    layout.show_table(console, TASK_COLUMNS, cells, note=note)


def big_status_renderable(console: Console, store: TaskSource, run: Mapping[str, Any], limit: int,
                          footer: str | None = None, wide: bool = False) -> Group:
    """:func:`status_renderable` of a run with more tasks than ``limit`` (for --watch)."""
    counts, cells, note = big_run_rows(store, str(run["id"]), limit)
    return _big_view(console, run, counts, cells, note, wide, footer)


def _big_view(console: Console, run: Mapping[str, Any], counts: Counter[str],
              cells: list[list[Text]], note: str | None, wide: bool,
              footer: str | None = None) -> Group:
    parts: list[RenderableType] = [_summary(run, counts)]
    if run.get("error"):
        parts.append(Text(str(run["error"]), style="red"))
    parts.append(layout.fitted_table(console, TASK_COLUMNS, cells, wide, note))
    if footer:
        parts.append(Text.from_markup(footer))
    return Group(*parts)


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


def _summary(run: Mapping[str, Any], rows: list[dict[str, Any]] | Counter[str]) -> Text:
    """The run's line above the table: id, pipeline, source, state, duration and the counts of
    its tasks by state (``rows``: the tasks, or their counts)."""
    took = None
    if run["started_at"]:
        took = (run["finished_at"] or run["heartbeat_at"] or run["started_at"]) - run["started_at"]
    counts = rows if isinstance(rows, Counter) else Counter(r["state"] for r in rows)
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
        return out[:limit], MORE_NOTE.format(more=more, s="s" if more > 1 else "")
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
    walls = [r["wall"] for r in group if r["wall"] is not None]
    cpus = [r["cpu"] for r in group if r["cpu"] is not None]
    peaks = [r["peak_rss"] for r in group if r["peak_rss"] is not None]
    hosts = {r["host"] for r in group if r["host"]}
    return _group_row(f"{base}[{index[0]}..{index[-1]}]", Counter(r["state"] for r in group),
                      sum(r["attempts"] for r in group), max(walls) if walls else None,
                      sum(cpus) if cpus else None, max(peaks) if peaks else None,
                      len(hosts), next(iter(hosts), None))


def _group_row(label: str, counts: Mapping[str, int], tries: int, wall: float | None,
               cpu: float | None, peak: int | None, n_hosts: int, host: str | None) -> list[Text]:
    states = sorted(counts, key=lambda s: STATE_ORDER.index(s) if s in STATE_ORDER else 99)
    state = Text("\n").join(Text(f"{counts[s]} {s}", style=STATE_STYLE.get(s, "")) for s in states)
    where = (host or "-") if n_hosts <= 1 else f"{n_hosts} hosts"
    return [Text(label), state, Text(str(tries)), Text(duration(wall) if wall is not None else "-"),
            Text(duration(cpu) if cpu is not None else "-"),
            Text(format_memory(peak) if peak is not None else "-"), Text(where), Text("-")]


def big_run_rows(store: TaskSource, run_id: str, limit: int
                 ) -> tuple[Counter[str], list[list[Text]], str | None]:
    """A run with more tasks than ``limit``, counted and grouped in SQL so that a run of a
    million tasks is not loaded: its counts by state, the table's first ``limit`` rows (maps
    grouped, their failed members by name) and the note under it."""
    groups = store.task_groups(run_id) or []
    counts = run_counts(groups)
    failed = sum(g["states"].get("failed", 0) for g in groups if g["n"] > 1)
    shown = groups[:limit]
    ends = [i for g in shown for i in (g["first"], g["last"])]
    tasks, attempts = store.tasks_at(run_id, ends, [g["grp"] for g in shown
                                                    if g["n"] > 1 and g["states"].get("failed")])
    rows = views.task_rows(tasks, attempts)
    by_idx = {task["idx"]: row for task, row in zip(tasks, rows, strict=True)}
    out: list[list[Text]] = []
    for g in shown:
        if g["n"] == 1:
            out.append(task_cells(by_idx[g["first"]]))
            continue
        first, last = (MAP_MEMBER.match(by_idx[i]["name"]) for i in (g["first"], g["last"]))
        span = f"[{first['index']}..{last['index']}]" if first and last else f"[{g['n']} tasks]"
        out.append(_group_row(f"{g['name']}{span}", g["states"], g["tries"], g["wall"], g["cpu"],
                              g["peak_rss"], g["hosts"], g["host"]))
        out += [task_cells(row) for task, row in zip(tasks, rows, strict=True)
                if task["grp"] == g["grp"] and task["state"] == "failed"]
    more = len(groups) + failed - min(len(out), limit)
    if more > 0:
        return counts, out[:limit], MORE_NOTE.format(more=more, s="s" if more > 1 else "")
    return counts, out, GROUPED_NOTE


def run_counts(groups: list[dict[str, Any]] | None) -> Counter[str]:
    """A run's tasks counted by state, from its groups (:meth:`TaskSource.task_groups`)."""
    counts: Counter[str] = Counter()
    for g in groups or []:
        counts.update(g["states"])
    return counts


def page_view(console: Console, run: Mapping[str, Any], counts: Counter[str],
              rows: list[dict[str, Any]], offset: int, wide: bool = False) -> None:
    """A page of a run's tasks one by one (``--offset``): the summary line over all of them,
    then the tasks from the ``offset``-th, and under them where the next page starts."""
    total = sum(counts.values())
    last = offset + len(rows)
    if not rows:
        note = f"no tasks from --offset {offset}: the run has {total:,}"
    else:
        after = f"; the next: --offset {last}" if last < total else ""
        note = f"tasks {offset + 1:,}..{last:,} of {total:,}{after}"
    _show(console, run, counts, [task_cells(r) for r in rows], note, wide)
