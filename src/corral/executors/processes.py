"""Helpers shared by the executors that run attempts as processes they watch themselves
(``local``, ``dask``, ``ssh``): stopping a process group or a worker with everything its task
started, and the one-line reason an attempt killed for its memory request is given."""

from __future__ import annotations

import os
import signal
from collections.abc import Collection

from corral.worker.metrics import process_tree


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (gone already, or not ours: nothing to do)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_tree(pid: int, keep: Collection[int] = ()) -> None:
    """SIGKILL the worker ``pid`` and its descendants (what its task started; orphans of a
    worker that is a child subreaper stay its descendants), except ``keep`` and theirs
    (processes a task chose to leave running). Descendants go first, twice: while the worker
    lives, nothing they fork meanwhile can leave its tree."""
    for _ in range(2):
        spared = {k for kept in keep for k in (kept, *process_tree(kept))}
        for child in process_tree(pid):
            if child not in spared:
                _kill(child)
    _kill(pid)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def over_memory_request(rss: int, requested: int) -> str:
    """The error of an attempt killed because its process tree used more than it asked for."""
    return (f"killed for using {rss / 2**20:.0f} MiB, over its memory request of "
            f"{requested / 2**20:.0f} MiB; raise Resources(memory=...) for this task")
