"""Helpers shared by the executors that run attempts as processes they watch themselves
(``local``, ``dask``, ``ssh``): stopping a process group, and the one-line reason an attempt
killed for its memory request is given."""

from __future__ import annotations

import os
import signal


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (gone already, or not ours: nothing to do)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def over_memory_request(rss: int, requested: int) -> str:
    """The error of an attempt killed because its process tree used more than it asked for."""
    return (f"killed for using {rss / 2**20:.0f} MiB, over its memory request of "
            f"{requested / 2**20:.0f} MiB; raise Resources(memory=...) for this task")
