"""Measuring an attempt: CPU times, peak memory of the process tree, I/O bytes.

Peak memory combines three sources: the kernel's high-water mark of this process (reset before
each task through ``/proc/self/clear_refs``), a sampling monitor thread that sums the RSS of the
whole process tree, and the largest child reaped during the task (``RUSAGE_CHILDREN``).
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from dataclasses import dataclass

import psutil

_HOST = socket.gethostname()


def hostname() -> str:
    return _HOST


def _read_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(field.encode()):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _io_counters() -> tuple[int, int]:
    try:
        with open("/proc/self/io", "rb") as fh:
            values = dict(line.split(b":", 1) for line in fh.read().splitlines())
        return int(values[b"rchar"]), int(values[b"wchar"])
    except (OSError, KeyError, ValueError):
        return 0, 0


def tree_rss(proc: psutil.Process) -> int:
    """RSS of a process and all its descendants, in bytes (0 if it is gone)."""
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
    """A daemon thread sampling the RSS of this process's children while a task runs."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._active = threading.Event()
        self._peak = 0
        self._self = psutil.Process()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        self._peak = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="corral-monitor", daemon=True)
            self._thread.start()
        self._active.set()

    def end(self) -> int:
        self._active.clear()
        return self._peak

    def _loop(self) -> None:
        while True:
            self._active.wait()
            time.sleep(self.interval)
            if self._active.is_set():
                self._peak = max(self._peak, tree_rss(self._self))


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
        return cls(
            started=time.time(),
            ru_self=resource.getrusage(resource.RUSAGE_SELF),
            ru_children=resource.getrusage(resource.RUSAGE_CHILDREN),
            io=_io_counters(),
            hwm_reset=_reset_hwm(),
        )

    def end(self, monitor: TreeMonitor | None) -> dict[str, float | int | str | None]:
        ended = time.time()
        ru_s = resource.getrusage(resource.RUSAGE_SELF)
        ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
        rchar, wchar = _io_counters()
        peak = _read_status_kb("VmHWM") if self.hwm_reset else None
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
