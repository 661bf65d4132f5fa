"""Rich renderers: `corral status RUN --metrics`, `corral runs --compare A B`, `corral why`.

Each function takes the data returned by :mod:`corral.report.metrics` or
:mod:`corral.report.compare` and returns a rich renderable; the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from corral.report import units as fmt
from corral.report.compare import Comparison, Explanation, Reason
from corral.report.metrics import RunMetrics, RunSummary

STATE_STYLE = {
    "succeeded": "green", "cached": "blue", "reused": "blue", "failed": "red",
    "running": "yellow", "pending": "dim", "cancelled": "magenta", "skipped": "dim",
    "rerun": "yellow", "new": "cyan", "removed": "magenta", "not run": "dim",
}


def natural_width(console: Console, renderable: RenderableType) -> int:
    """The width ``renderable`` takes when nothing limits it."""
    return Measurement.get(console, console.options.update_width(100_000), renderable).maximum


def fitted(console: Console, build: Callable[[frozenset[str]], Table], give: Sequence[str],
           wide: bool = False) -> tuple[Table, list[str]]:
    """The table ``build(hidden)`` at the console's width: the columns named in ``give`` are
    hidden one by one, in that order, until it fits (none with ``wide``). Its columns must not
    wrap: when even the rest is too wide, the table is as wide as it needs (longer lines,
    never a cut name or state). Returns the table and the hidden columns."""
    hidden: list[str] = []
    table = build(frozenset())
    for name in [] if wide else give:
        if natural_width(console, table) <= console.width:
            break
        hidden.append(name)
        table = build(frozenset(hidden))
    width = natural_width(console, table)
    if width > console.width:
        table.width = width
    return table, hidden


def _summary_table(s: RunSummary) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(overflow="fold")  # values wrap, never "…"
    grid.add_column(style="dim")
    grid.add_column(overflow="fold")
    states = ", ".join(
        f"[{STATE_STYLE.get(k, '')}]{n:,} {k}[/]" for k, n in s.states.items()
    ) or "-"
    rows = [
        ("State", f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]", "Executor", escape(s.executor)),
        ("Wall time", fmt.duration(s.wall), "Mean queue wait", fmt.duration(s.queued_mean)),
        ("CPU time", fmt.hours(s.cpu_hours), "Core-hours requested",
         fmt.hours(s.core_hours_requested)),
        ("CPU efficiency", fmt.percent(s.cpu_efficiency), "Largest peak memory",
         fmt.size(s.peak_rss_max)),
        ("Tasks", f"{s.n_tasks:,}: {states}", "Reused from cache", f"{s.cache_hits:,}"),
        ("Attempts", f"{s.attempts:,} (retries {s.retries:,}, failed {s.failed_attempts:,})",
         "", ""),
    ]
    for row in rows:
        grid.add_row(*row)
    return grid


GROUP_COLUMNS = ("tasks", "wall\nmean", "wall\nmax", "CPU\nmean", "cores\nreq/used", "CPU\neff.",
                 "peak /\nmem req")
GROUP_GIVE = ("cores\nreq/used", "CPU\nmean", "wall\nmax", "peak /\nmem req", "CPU\neff.",
              "wall\nmean")
"""The per-name columns in the order they give way at a narrow width (names never do)."""


def _groups_table(m: RunMetrics, top: int, hidden: frozenset[str] = frozenset(),
                  plain: bool = False) -> Table:
    table = Table(box=None if plain else box.SIMPLE_HEAD, title="Per task name",
                  title_justify="left", title_style="bold", pad_edge=False, show_edge=False,
                  caption_justify="left", caption_style="dim")
    table.add_column("name", no_wrap=True)  # copied into `corral logs`: never broken
    shown = [c for c in GROUP_COLUMNS if c not in hidden]
    for name in shown:
        table.add_column(name.replace("\n", " ") if plain else name, justify="right", no_wrap=True)
    sep = ", " if plain else "\n"
    for g in m.groups[:top]:
        used = "-" if g.cores_used_mean is None else f"{g.cores_used_mean:.1f}"
        count = Text(f"{g.count:,}")
        if g.failed:
            count.append(f"{sep}{g.failed:,} failed", style="red")
        if g.cached:
            count.append(f"{sep}{g.cached:,} reused", style="blue")
        cells: dict[str, RenderableType] = {
            "tasks": count, "wall\nmean": fmt.duration(g.wall_mean),
            "wall\nmax": fmt.duration(g.wall_max), "CPU\nmean": fmt.duration(g.cpu_mean),
            "cores\nreq/used": f"{g.cores_requested}/{used}", "CPU\neff.": fmt.percent(g.cpu_efficiency),
            "peak /\nmem req": f"{fmt.size(g.peak_rss_max)}/{fmt.size(g.memory_requested)}",
        }
        table.add_row(Text(g.name), *(cells[c] for c in shown))
    notes = []
    if len(m.groups) > top:
        notes.append(f"{len(m.groups) - top} more task names; see --json")
    if hidden:
        notes.append(", ".join(h.replace("\n", " ") for h in hidden) + " hidden; --wide shows all")
    if notes:
        table.caption = "; ".join(notes)
    return table


def metrics_renderable(m: RunMetrics, top: int = 25, console: Console | None = None,
                       wide: bool = False, plain: bool = False) -> RenderableType:
    """`corral status RUN --metrics`: summary, per task name aggregates, critical path, advice.
    Given ``console``, the per-name table fits its width (see :func:`fitted`); ``plain``: no
    box drawing, one row a line."""
    if console is None:
        groups = _groups_table(m, top, plain=plain)
    else:
        groups = fitted(console, lambda hidden: _groups_table(m, top, hidden, plain), GROUP_GIVE,
                        wide or plain)[0]
    head = Text.assemble("Run ", (m.summary.run_id, "bold"), " of ", m.summary.pipeline)
    parts: list[RenderableType] = [head, _summary_table(m.summary), Text(""), groups]
    path = m.critical_path
    if path.tasks:
        shown = path.tasks if len(path.tasks) <= 8 else [*path.tasks[:3], "…", *path.tasks[-3:]]
        parts.append(Text.assemble(
            ("Critical path ", "bold"), (fmt.duration(path.length), "bold red"),
            f" over {len(path.tasks)} tasks: ", " → ".join(shown),
        ))
    if m.recommendations:
        parts.append(Text("\nAdvice", style="bold"))
        parts.extend(Text(f"  • {r.message}") for r in m.recommendations)
    return Group(*parts)


def _reason_text(r: Reason) -> Text:
    style = {"code": "magenta", "params": "yellow", "input": "cyan", "upstream": "blue",
             "failed": "red", "forced": "dim", "new": "green"}.get(r.kind, "")
    return Text.assemble((f"{r.kind:<8}", style), " ", r.message)


def _add_reasons(tree: Tree, reasons: list[Reason]) -> None:
    for r in reasons:
        branch = tree.add(_reason_text(r))
        _add_reasons(branch, r.causes)


def comparison_renderable(c: Comparison, show_reused: bool = False) -> RenderableType:
    """`corral runs --compare A B`: counts, then each rerun/new/removed task with its reasons."""
    counts = ", ".join(
        f"[{STATE_STYLE.get(k, '')}]{n:,} {k}[/]" for k, n in sorted(c.counts().items())
    )
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("task")
    table.add_column("in B")
    table.add_column("why")
    for ch in sorted(c.changes, key=lambda ch: (ch.status == "reused", ch.name)):
        if ch.status == "reused" and not show_reused:
            continue
        why = "\n".join(r.message for r in ch.reasons) or "-"
        table.add_row(Text(ch.name), Text(ch.status, style=STATE_STYLE.get(ch.status, "")),
                      Text(why))
    head = Text.from_markup(
        f"Run [bold]{escape(c.run_b)}[/] compared with [bold]{escape(c.run_a)}[/]: {counts}"
    )
    if not table.rows:
        return Group(head, Text("Every task was reused; nothing reran.", style="dim"))
    return Group(head, table)


def explanation_renderable(e: Explanation) -> RenderableType:
    """`corral why RUN TASK`: the one-line answer, then the reasons as a tree."""
    style = {"ran": "yellow", "reused": "blue"}.get(e.outcome, "dim")
    tree = Tree(Text.assemble((e.task, "bold"), "  ", (e.outcome, style), f"  ({e.state})"))
    _add_reasons(tree, e.reasons)
    return Group(Text(e.summary), tree) if e.reasons else Text(e.summary)
