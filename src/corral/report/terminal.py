"""Rich renderers: `corral status RUN --metrics`, `corral runs --compare A B`, `corral why`.

Each function takes the data returned by :mod:`corral.report.metrics` or
:mod:`corral.report.compare` and returns a rich renderable; the CLI prints it.
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from corral.report import _format as fmt
from corral.report.compare import Comparison, Explanation, Reason
from corral.report.metrics import RunMetrics, RunSummary

STATE_STYLE = {
    "succeeded": "green", "cached": "blue", "reused": "blue", "failed": "red",
    "running": "yellow", "pending": "dim", "cancelled": "magenta", "skipped": "dim",
    "rerun": "yellow", "new": "cyan", "removed": "magenta", "not run": "dim",
}


def _summary_table(s: RunSummary) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim")
    grid.add_column()
    grid.add_column(style="dim")
    grid.add_column()
    states = ", ".join(
        f"[{STATE_STYLE.get(k, '')}]{n:,} {k}[/]" for k, n in s.states.items()
    ) or "-"
    rows = [
        ("Run", f"[bold]{escape(s.run_id)}[/] ({escape(s.pipeline)})", "State",
         f"[{STATE_STYLE.get(s.state, '')}]{s.state}[/]"),
        ("Wall time", fmt.duration(s.wall), "Executor", escape(s.executor)),
        ("CPU time", fmt.hours(s.cpu_hours), "Core-hours requested",
         fmt.hours(s.core_hours_requested)),
        ("CPU efficiency", fmt.percent(s.cpu_efficiency), "Largest peak memory",
         fmt.size(s.peak_rss_max)),
        ("Tasks", f"{s.n_tasks:,}: {states}", "Reused from cache", f"{s.cache_hits:,}"),
        ("Attempts", f"{s.attempts:,} (retries {s.retries:,}, failed {s.failed_attempts:,})",
         "Mean queue wait", fmt.duration(s.queued_mean)),
    ]
    for row in rows:
        grid.add_row(*row)
    return grid


def _groups_table(m: RunMetrics, top: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Per task name", title_justify="left",
                  title_style="bold", pad_edge=False)
    table.add_column("name", min_width=10, overflow="fold")
    for name in ("tasks", "wall\nmean", "wall\nmax", "CPU\nmean", "cores\nreq/used",
                 "CPU\neff.", "peak /\nmem req"):
        table.add_column(name, justify="right", no_wrap=True)
    for g in m.groups[:top]:
        used = "-" if g.cores_used_mean is None else f"{g.cores_used_mean:.1f}"
        count = Text(f"{g.count:,}")
        if g.failed:
            count.append(f"\n{g.failed:,} failed", style="red")
        if g.cached:
            count.append(f"\n{g.cached:,} reused", style="blue")
        table.add_row(
            Text(g.name), count, fmt.duration(g.wall_mean), fmt.duration(g.wall_max),
            fmt.duration(g.cpu_mean), f"{g.cores_requested}/{used}",
            fmt.percent(g.cpu_efficiency),
            f"{fmt.size(g.peak_rss_max)}/{fmt.size(g.memory_requested)}",
        )
    if len(m.groups) > top:
        table.caption = f"{len(m.groups) - top} more task names; see --json"
    return table


def metrics_renderable(m: RunMetrics, top: int = 25) -> RenderableType:
    """`corral status RUN --metrics`: summary, per task name aggregates, critical path, advice."""
    parts: list[RenderableType] = [_summary_table(m.summary), Text(""), _groups_table(m, top)]
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
