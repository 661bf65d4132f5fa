"""Live progress display of a run: done / running / failed / cached, elapsed, ETA."""

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

from corral.engine.engine import Progress as EngineProgress


class LiveProgress:
    """Feeds engine progress into a rich progress bar, at most ten updates a second."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=console, transient=False,
        )
        self.task_id = self.bar.add_task(title, total=None, detail="")
        self._last = 0.0

    def __enter__(self) -> LiveProgress:
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
