"""A one-line progress display on standard error for large transfers.

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


__all__ = ["PROGRESS_MIN", "Advance", "batch_size", "transfer_progress"]
