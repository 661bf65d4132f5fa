"""The processes an attempt starts: found, and ended when the attempt ends.

A Python task runs inside a long-lived worker (a local pool worker, a Dask attempt process) or a
``python -m corral.worker`` process (SSH, batch jobs). Whatever it starts (``subprocess``,
``os.system``, a ``multiprocessing`` pool, a daemon that double-forks) must not outlive it: a
leftover process keeps running, holds files and pipes open (the ``corral run`` output pipe, so
``corral run p.py | tee log`` never returns) and is counted by nobody.

The worker makes itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``): an orphan of the
task (a daemon whose parent exited) is re-parented to the worker rather than to init, so every
process the task started stays a descendant of the worker and is found in ``/proc``. When the
attempt ends, :func:`end_children` sends SIGTERM to all of them, waits :data:`GRACE` seconds at
most, sends SIGKILL to those left and reaps the zombies.

A task that really wants a process to outlive it calls :func:`keep_children` (all its live
children, or the given ones, and their descendants are left running; their output still goes to
the attempt's logs).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterable
from typing import Any

from corral.worker.metrics import process_tree

GRACE = 1.0
"""Seconds between SIGTERM and SIGKILL for the processes an attempt left running."""
_PR_SET_CHILD_SUBREAPER = 36

_kept: set[int] = set()
"""Processes kept alive (by :func:`keep_children`) by attempts of this worker, ever."""
_keep_request: set[int] | None = None
"""What the running attempt asked to keep (pids), or None."""
_kept_last = False
_owner = False
"""This process is a worker whose children are all its tasks' (see :func:`become_subreaper`);
elsewhere (a worker loop run inside a test) nothing is ended or reaped."""
"""The last attempt that ended kept processes running."""


def become_subreaper() -> bool:
    """Declare this process a worker whose children are all its tasks' (they are ended when an
    attempt ends) and make it the reaper of its orphaned descendants (Linux; False if the
    kernel does not offer it: then only the processes still in its tree are found)."""
    global _owner
    _owner = True
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def keep_children(*processes: Any) -> None:
    """Let processes started by the running task outlive it.

    Without arguments, every process the task has started so far (and its descendants) is
    left running when the task ends; with arguments (``subprocess.Popen`` objects, psutil
    processes or pids), only those and their descendants. Everything else the task started is
    still ended. Call it from inside a task::

        from corral.worker.children import keep_children

        @task
        def serve() -> str:
            proc = subprocess.Popen(["my-server", "--port", "8123"])
            keep_children(proc)
            return "http://localhost:8123"
    """
    global _keep_request
    if _keep_request is None:
        _keep_request = set()
    if not processes:
        _keep_request.update(process_tree(os.getpid()))
        return
    for p in processes:
        pid = int(p) if isinstance(p, int) else int(p.pid)
        _keep_request.add(pid)
        _keep_request.update(process_tree(pid))


def begin_attempt() -> None:
    """Forget the previous attempt's :func:`keep_children` request."""
    global _keep_request
    _keep_request = None


def keep_requested() -> bool:
    """Whether the attempt :func:`end_children` last ended kept processes running."""
    return _kept_last


def kept_processes() -> list[int]:
    """The processes attempts of this worker kept running (:func:`keep_children`) still alive."""
    return sorted(p for p in _kept if _running(p))


def end_children(grace: float = GRACE) -> int:
    """End every process this worker's task started and did not keep; returns how many were
    running. SIGTERM, up to ``grace`` seconds, then SIGKILL; their zombies are reaped."""
    global _keep_request, _kept_last
    _kept_last = bool(_keep_request)
    if _keep_request:
        _kept.update(_keep_request)
    _keep_request = None
    if not _owner or not _has_children():
        return 0
    _reap()
    targets = [p for p in process_tree(os.getpid()) if p not in _kept and not _excluded(p)]
    if not targets:
        return 0
    stop_processes(targets, grace)
    return len(targets)


def stop_processes(pids: Iterable[int], grace: float) -> None:
    """SIGTERM ``pids``, wait until they are gone (reaping our own zombies) for up to ``grace``
    seconds, then SIGKILL those left."""
    alive = _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    delay = 0.002
    while alive and time.monotonic() < deadline:
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
        _reap()
        alive = [p for p in alive if _running(p)]
    if alive:
        _signal(alive, signal.SIGKILL)
    end = time.monotonic() + 1.0
    while alive and time.monotonic() < end:  # gone from the process table, not just signalled
        _reap()
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.005)


def _has_children() -> bool:
    """Whether this process has any child, running or ended (one system call: a task that
    started nothing costs no scan of /proc). Every descendant of a subreaper with no child at
    all is gone."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    except OSError:
        pass
    return True


def _excluded(pid: int) -> bool:
    """A descendant of a kept process (its own children stay with it)."""
    return any(pid in process_tree(k) for k in _kept if _running(k))


def _signal(pids: Iterable[int], signum: int) -> list[int]:
    sent = []
    for pid in pids:
        try:
            os.kill(pid, signum)
            sent.append(pid)
        except ProcessLookupError:
            continue
        except PermissionError:
            continue
    return sent


def _running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        import psutil

        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def _reap() -> None:
    """Reap every child of this process that has ended (orphans re-parented here included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            return
        if pid == 0:
            return
        _kept.discard(pid)
