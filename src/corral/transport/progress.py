"""A one-line progress display on standard error for large transfers (sends and fetches).

Shown only when the batch of files is at least :data:`PROGRESS_MIN` bytes and standard error is
a terminal (as rich decides it: ``FORCE_COLOR`` or ``TTY_COMPATIBLE=1`` force one); quiet
otherwise, so logs and pipes get nothing. The callback it gives is safe to call from the
transport's event loop thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

PROGRESS_MIN = 64 * 2**20
"""Batches of at least this many bytes show progress (when standard error is a terminal)."""

Advance = Callable[[str, int], None]
"""``(file, bytes copied so far of it)``: reports progress on one file."""


def batch_size(paths: Sequence[str]) -> int:
    """Total size of the regular files among ``paths`` (directories and missing ones count 0)."""
    total = 0
    for path in paths:
        try:
            if os.path.isfile(path):
                total += os.stat(path).st_size
        except OSError:
            continue
    return total


@contextlib.contextmanager
def transfer_progress(what: str, total: int, console: Console | None = None) -> Iterator[Advance | None]:
    """A progress line ``what`` for ``total`` bytes, or ``None`` when none is shown (below
    :data:`PROGRESS_MIN`, or standard error is not a terminal)."""
    console = console or Console(stderr=True)
    if total < PROGRESS_MIN or not console.is_terminal:
        yield None
        return
    done: dict[str, int] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(what, total=total)

        def advance(name: str, copied: int) -> None:
            done[name] = copied
            progress.update(task, completed=sum(done.values()))

        yield advance
        progress.update(task, completed=total)


class LazyProgress:
    """A progress line for a batch whose sizes are only learnt as the copies run (files
    fetched from a host): shown from the first file of :data:`PROGRESS_MIN` bytes or more, when
    standard error is a terminal; smaller files are not counted. Use it as a context manager
    and call :meth:`advance` as copies progress (from any thread)."""

    def __init__(self, what: str, console: Console | None = None) -> None:
        self.what = what
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def advance(self, name: str, copied: int, total: int) -> None:
        if total < PROGRESS_MIN or not self.console.is_terminal:
            return
        if self.progress is None:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), console=self.console)
            self.progress.start()
            self.progress.add_task(self.what, total=0)
        self.totals[name], self.done[name] = total, copied
        task = self.progress.task_ids[0]
        self.progress.update(task, total=sum(self.totals.values()), completed=sum(self.done.values()))

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


__all__ = ["PROGRESS_MIN", "Advance", "LazyProgress", "batch_size", "transfer_progress"]
