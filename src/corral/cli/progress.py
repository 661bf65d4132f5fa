"""Progress of a run: in a terminal a live bar (done / running / failed / cached, elapsed,
ETA) and one bar per task name with its counts by state and its own ETA; in a log file or pipe a line when the
counts change, at most every few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from corral.engine.progress import Progress as EngineProgress
from corral.states import TaskState

MAX_GROUPS = 12
"""Task names shown with a bar of their own during a run (the overall bar is always shown)."""
_ENDED = (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.FAILED, TaskState.SKIPPED,
          TaskState.CANCELLED)
_SHOWN = (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.RUNNING, TaskState.QUEUED,
          TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED)
_STYLE = {TaskState.SUCCEEDED: "green", TaskState.CACHED: "cyan", TaskState.RUNNING: "yellow",
          TaskState.QUEUED: "blue", TaskState.FAILED: "red", TaskState.SKIPPED: "magenta",
          TaskState.CANCELLED: "red"}


class LiveProgress:
    """Feeds engine progress into a rich progress bar, at most ten updates a second."""

    def __init__(self, console: Console, title: str,
                 clock: Callable[[], float] | None = None) -> None:
        """``clock``: the time the ETAs are computed with (the monotonic clock by default)."""
        self.console, self.title = console, title
        # the pipeline's name on a line of its own above the bar; the counts are never cut: the
        # bar takes what width is left
        fixed = Column(no_wrap=True)
        self.bar = Progress(
            MofNCompleteColumn(table_column=fixed), TextColumn("{task.fields[detail]}", table_column=fixed),
            TimeElapsedColumn(table_column=fixed), TextColumn("ETA", table_column=fixed),
            TimeRemainingColumn(table_column=fixed), BarColumn(bar_width=None),
            console=console, transient=False, expand=True, get_time=clock,
        )
        self.task_id = self.bar.add_task(title, total=None, detail="")
        # counts first, then the name's ETA (its time taken once it has ended), the name last
        # and whole (only a name wider than the terminal is cut)
        self.groups = Progress(
            MofNCompleteColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[detail]}", table_column=Column(no_wrap=True)),
            TimeRemainingColumn(compact=True, elapsed_when_finished=True,
                                table_column=Column(no_wrap=True)),
            TextColumn("{task.description}", table_column=Column(no_wrap=True)),
            console=console, transient=False, expand=False, get_time=clock,
        )
        self.group_ids: dict[str, Any] = {}
        self._last = 0.0

    def __enter__(self) -> LiveProgress:
        self.console.print(Text(self.title, style="bold"), soft_wrap=True)
        self.live = Live(Group(self.groups, self.bar), console=self.console, transient=False,
                         refresh_per_second=10)
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.stop()

    def update(self, p: EngineProgress, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        finished = p.done + p.cached + p.failed + p.skipped
        detail = (f"[green]{p.done} done[/] [cyan]{p.cached} cached[/] "
                  f"[yellow]{p.running} running[/] [red]{p.failed} failed[/]")
        if p.skipped:
            detail += f" [magenta]{p.skipped} skipped[/]"
        if p.paused:
            detail += " [bold yellow]PAUSED[/]"
        self.bar.update(self.task_id, total=p.total, completed=finished, detail=detail)
        self._update_groups(p)

    def _update_groups(self, p: EngineProgress) -> None:
        """A bar per task name (a map's elements share theirs) with its counts by state; at
        most :data:`MAX_GROUPS`, the first ones that started."""
        for group, counts in p.groups.items():
            total = sum(counts.values())
            tid = self.group_ids.get(group)
            if tid is None:
                if len(self.group_ids) >= MAX_GROUPS or total == counts.get(TaskState.PENDING, 0):
                    continue
                tid = self.group_ids[group] = self.groups.add_task(group, total=total, detail="")
            done = sum(counts.get(st, 0) for st in _ENDED)
            detail = " ".join(f"[{_STYLE[st]}]{n} {st.value}[/]" for st in _SHOWN
                              if (n := counts.get(st, 0)))
            self.groups.update(tid, total=total, completed=done, detail=detail)


class LineProgress:
    """Progress where nothing can be redrawn (a pipe, a log file, TERM=dumb): a line when the
    counts change, at most every ``every`` seconds, and the last counts at the end."""

    def __init__(self, console: Console, title: str, every: float = 5.0) -> None:
        self.console, self.title, self.every = console, title, every
        self._last = -every
        self._shown: tuple[int, ...] | None = None

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, p: EngineProgress, force: bool = False) -> None:
        counts = (p.total, p.done, p.cached, p.running, p.failed, p.skipped, int(p.paused))
        now = time.monotonic()
        if counts == self._shown or (not force and now - self._last < self.every):
            return
        self._shown, self._last = counts, now
        finished = p.done + p.cached + p.failed + p.skipped
        line = (f"{time.strftime('%H:%M:%S')} {self.title}: {finished}/{p.total} finished "
                f"({p.done} done, {p.cached} cached, {p.failed} failed")
        line += f", {p.skipped} skipped), " if p.skipped else "), "
        line += f"{p.running} running" + (", paused" if p.paused else "")
        self.console.out(line, highlight=False)
