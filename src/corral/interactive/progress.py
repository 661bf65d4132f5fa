"""The progress of an interactive run: a rich bar in a terminal, an in-place display in Jupyter.

:func:`make_display` picks one: in a Jupyter kernel an IPython display (``display_id``) whose
content is replaced as calls end; in a terminal (standard error is a TTY) a
:class:`rich.progress.Progress` bar on standard error; otherwise nothing. ``progress=False``
turns it off, ``progress=True`` shows the bar even when standard error is not a terminal.
The engine reports after every loop iteration (:attr:`corral.engine.engine.Engine.on_progress`);
the display is redrawn at most every :data:`REFRESH` seconds, and once more at the end.
"""

from __future__ import annotations

import html
import importlib
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from corral.engine.progress import Progress as EngineProgress
from corral.states import TaskState

REFRESH = 0.2
"""Seconds between two redraws of the display."""
ENDED = frozenset({TaskState.SUCCEEDED, TaskState.CACHED, TaskState.FAILED, TaskState.SKIPPED,
                   TaskState.CANCELLED})


@dataclass(frozen=True)
class Tally:
    """How many calls the run was given, and how many ended, by how."""

    total: int = 0
    ended: int = 0
    cached: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0

    @classmethod
    def of(cls, progress: EngineProgress) -> Tally:
        counts: dict[TaskState, int] = {}
        for group in list(progress.groups.values()):
            for state, n in list(group.items()):
                counts[state] = counts.get(state, 0) + n
        return cls(progress.total, sum(counts.get(s, 0) for s in ENDED),
                   counts.get(TaskState.CACHED, 0), counts.get(TaskState.FAILED, 0),
                   counts.get(TaskState.CANCELLED, 0), progress.running)

    def detail(self) -> str:
        parts = [f"{self.running} in flight"] if self.running else []
        parts += [f"{n} {what}" for n, what in ((self.cached, "cached"), (self.failed, "failed"),
                                               (self.cancelled, "cancelled")) if n]
        return ", ".join(parts)


class View(Protocol):
    def show(self, tally: Tally) -> None: ...

    def stop(self) -> None: ...


class TerminalBar:
    """A rich progress bar (on standard error unless given another console)."""

    def __init__(self, name: str, console: Console) -> None:
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[detail]}"),
                            TimeElapsedColumn(), console=console, auto_refresh=False)
        self.task = self.bar.add_task(name, total=None, detail="")
        self.bar.start()

    def show(self, tally: Tally) -> None:
        self.bar.update(self.task, total=tally.total, completed=tally.ended,
                        detail=tally.detail())
        self.bar.refresh()

    def stop(self) -> None:
        self.bar.stop()


class NotebookDisplay:
    """An IPython display, created where the executor is, then updated in place."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ipd: Any = importlib.import_module("IPython.display")  # in a kernel: imported
        self.handle: Any = self.ipd.display(self._html(Tally()), display_id=True)

    def _html(self, tally: Tally) -> Any:
        detail = tally.detail()
        text = f"{self.name}: {tally.ended} / {tally.total} calls done" + (
            f" ({detail})" if detail else "")
        return self.ipd.HTML(f'<progress value="{tally.ended}" max="{max(tally.total, 1)}"></progress> '
                    f"<code>{html.escape(text)}</code>")

    def show(self, tally: Tally) -> None:
        self.handle.update(self._html(tally))

    def stop(self) -> None:
        pass


class Display:
    """Redraws a :class:`View` from the engine's reports, at most every :data:`REFRESH` s."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.last = 0.0
        self.shown: Tally | None = None
        self.closed = False
        self.lock = threading.Lock()

    def report(self, progress: EngineProgress) -> None:
        """The engine's callback (its thread): redraw when it is time and something changed."""
        now = time.monotonic()
        if now - self.last < REFRESH:
            return
        self.last = now
        self.draw(Tally.of(progress))

    def draw(self, tally: Tally) -> None:
        with self.lock:
            if tally != self.shown:
                self.shown = tally
                self.view.show(tally)

    def close(self, progress: EngineProgress) -> None:
        """The final count, then the view ends (the bar stays on the screen); once."""
        if self.closed:
            return
        self.draw(Tally.of(progress))
        with self.lock:
            self.closed = True
            self.view.stop()


def in_jupyter() -> bool:
    """Whether this is a Jupyter kernel (IPython already imported, a ZMQ shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_display(progress: bool | None, name: str) -> Display | None:
    """The display for ``progress`` (None: automatic, see the module)."""
    if progress is False:
        return None
    if in_jupyter():
        return Display(NotebookDisplay(name))
    if progress is True or sys.stderr.isatty():
        return Display(TerminalBar(name, Console(stderr=True,
                                                 force_terminal=True if progress else None)))
    return None
