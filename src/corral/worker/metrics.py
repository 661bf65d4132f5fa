"""Measuring an attempt: CPU times, peak memory of the process tree, I/O bytes.

Peak memory combines three sources: the kernel's high-water mark of this process (reset before
each task through ``/proc/self/clear_refs``), a sampling monitor thread that sums the RSS of the
whole process tree, and the largest child reaped during the task (``RUSAGE_CHILDREN``).
"""

from __future__ import annotations

import os
import re
import resource
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psutil is the fallback where /proc cannot tell: imported only then
    import psutil

_HOST = socket.gethostname()


def hostname() -> str:
    return _HOST


class _SelfFiles:
    """This process's ``/proc/self`` files that every attempt reads, opened once per process
    (a forked worker opens its own) and read with ``pread`` at offset 0, which makes the
    kernel write them anew: opening, reading and closing them as Python files cost about
    half of a no-op task's time in a worker. A file that cannot be opened (no /proc, a
    kernel without it) stays None and its figure is taken elsewhere, or left out."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.io = self._open("/proc/self/io", os.O_RDONLY)
        self.status = self._open("/proc/self/status", os.O_RDONLY)
        self.clear_refs = self._open("/proc/self/clear_refs", os.O_WRONLY)

    @staticmethod
    def _open(path: str, flags: int) -> int | None:
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except OSError:
            return None


_SELF: _SelfFiles | None = None


def _self_files() -> _SelfFiles:
    global _SELF
    if _SELF is None or _SELF.pid != os.getpid():  # (in a forked child: its own files)
        _SELF = _SelfFiles()
    return _SELF


_IO = re.compile(rb"rchar:\s*(\d+)\s+wchar:\s*(\d+)")
"""The first two lines of ``/proc/self/io``: characters read and written."""
_HWM = re.compile(rb"\nVmHWM:\s*(\d+)")


def _read_hwm(files: _SelfFiles) -> int | None:
    """The kernel's high-water mark of this process's resident memory (``VmHWM``), bytes."""
    if files.status is None:
        return None
    try:
        found = _HWM.search(os.pread(files.status, 4096, 0))  # (it is near the top)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _reset_hwm(files: _SelfFiles) -> bool:
    if files.clear_refs is None:
        return False
    try:
        os.write(files.clear_refs, b"5")
        return True
    except OSError:
        return False


def _io_counters(files: _SelfFiles) -> tuple[int, int]:
    if files.io is None:
        return 0, 0
    try:
        found = _IO.match(os.pread(files.io, 256, 0))
    except OSError:
        return 0, 0
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _proc_children(pid: int) -> list[int] | None:
    """Direct children of ``pid`` from ``/proc/PID/task/*/children`` (reads only this process,
    not the whole process table); None where the kernel does not offer the file."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as fh:
                found.extend(int(c) for c in fh.read().split())
        except FileNotFoundError:
            continue  # the thread ended, or no CONFIG_PROC_CHILDREN (checked below)
        except OSError:
            return None
    if not found and not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        return None
    return found


def descendants(pid: int) -> list[int] | None:
    """Every descendant of ``pid`` (None if /proc cannot tell; then ask psutil)."""
    first = _proc_children(pid)
    if first is None:
        return None
    out = list(first)
    stack = list(first)
    while stack:
        out.extend(kids := _proc_children(stack.pop()) or [])  # None: it ended meanwhile
        stack.extend(kids)
    return out


def process_tree(pid: int) -> list[int]:
    """Every descendant of ``pid``: from /proc, else from psutil ([] if it is gone)."""
    found = descendants(pid)
    if found is not None:
        return found
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _statm_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss(proc: psutil.Process | int) -> int:
    """RSS of a process and all its descendants, in bytes (0 if it is gone).

    On Linux this reads only the process's own /proc entries; elsewhere (or without
    ``/proc/PID/task/TID/children``) psutil scans the process table."""
    pid = proc if isinstance(proc, int) else proc.pid
    kids = descendants(pid)
    if kids is not None:
        return _statm_rss(pid) + sum(_statm_rss(k) for k in kids)
    import psutil

    return _psutil_tree_rss(psutil.Process(pid) if isinstance(proc, int) else proc)


def _psutil_tree_rss(proc: psutil.Process) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


class TreeMonitor:
    """A daemon thread sampling the RSS of this process's children while a task runs. It
    parks when no task has run for :data:`PARK_AFTER` seconds; between the tasks of a busy
    worker it only wakes up (starting and stopping it for each of a map's tiny tasks cost a
    twentieth of the task)."""

    PARK_AFTER = 1.0

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._active = threading.Event()
        self._running = False
        self._ended = 0.0
        self._peak = 0
        self._pid = os.getpid()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        self._peak = 0
        self._running = True
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="corral-monitor", daemon=True)
            self._thread.start()
        if not self._active.is_set():
            self._active.set()

    def end(self) -> int:
        self._running = False
        self._ended = time.monotonic()
        return self._peak

    def _loop(self) -> None:
        while True:
            self._active.wait()
            time.sleep(self.interval)
            if self._running:
                self._peak = max(self._peak, self._sample())
            elif time.monotonic() - self._ended > self.PARK_AFTER:
                self._active.clear()
                if self._running:  # a task began meanwhile: it may have seen the event set
                    self._active.set()

    def _sample(self) -> int:
        """Tree RSS while the task has children; its own peak comes from the kernel's VmHWM,
        so a childless task costs one small /proc read per interval."""
        kids = descendants(self._pid)
        if kids is None:
            return tree_rss(self._pid)
        if not kids:
            return 0
        return _statm_rss(self._pid) + sum(_statm_rss(k) for k in kids)


@dataclass
class Probe:
    """Counters at the start of an attempt, turned into metrics at its end."""

    started: float
    ru_self: resource.struct_rusage
    ru_children: resource.struct_rusage
    io: tuple[int, int]
    hwm_reset: bool

    @classmethod
    def begin(cls, monitor: TreeMonitor | None) -> Probe:
        if monitor is not None:
            monitor.begin()
        files = _self_files()
        return cls(
            started=time.time(),
            ru_self=resource.getrusage(resource.RUSAGE_SELF),
            ru_children=resource.getrusage(resource.RUSAGE_CHILDREN),
            io=_io_counters(files),
            hwm_reset=_reset_hwm(files),
        )

    def end(self, monitor: TreeMonitor | None) -> dict[str, float | int | str | None]:
        ended = time.time()
        ru_s = resource.getrusage(resource.RUSAGE_SELF)
        ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
        files = _self_files()
        rchar, wchar = _io_counters(files)
        peak = _read_hwm(files) if self.hwm_reset else None
        if peak is None:
            peak = ru_s.ru_maxrss * 1024
        if ru_c.ru_maxrss > self.ru_children.ru_maxrss:
            peak = max(peak, ru_c.ru_maxrss * 1024)
        if monitor is not None:
            peak = max(peak, monitor.end())
        return {
            "started": self.started,
            "ended": ended,
            "cpu_user": (ru_s.ru_utime - self.ru_self.ru_utime)
            + (ru_c.ru_utime - self.ru_children.ru_utime),
            "cpu_system": (ru_s.ru_stime - self.ru_self.ru_stime)
            + (ru_c.ru_stime - self.ru_children.ru_stime),
            "peak_rss": int(peak),
            "read_bytes": max(0, rchar - self.io[0]),
            "write_bytes": max(0, wchar - self.io[1]),
            "host": _HOST,
            "pid": os.getpid(),
        }
