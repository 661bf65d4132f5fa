"""Progress of a run: in a terminal a live bar (done / running / failed / cached, elapsed,
ETA); in a log file or pipe a line when the counts change, at most every few seconds."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
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

from corral.engine.engine import Progress as EngineProgress


class LiveProgress:
    """Feeds engine progress into a rich progress bar, at most ten updates a second."""

    def __init__(self, console: Console, title: str) -> None:
        self.console, self.title = console, title
        # the pipeline's name on a line of its own above the bar; the counts are never cut: the
        # bar takes what width is left
        fixed = Column(no_wrap=True)
        self.bar = Progress(
            MofNCompleteColumn(table_column=fixed), TextColumn("{task.fields[detail]}", table_column=fixed),
            TimeElapsedColumn(table_column=fixed), TextColumn("ETA", table_column=fixed),
            TimeRemainingColumn(table_column=fixed), BarColumn(bar_width=None),
            console=console, transient=False, expand=True,
        )
        self.task_id = self.bar.add_task(title, total=None, detail="")
        self._last = 0.0

    def __enter__(self) -> LiveProgress:
        self.console.print(Text(self.title, style="bold"), soft_wrap=True)
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

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
