"""Where a Python task's output goes: file descriptors 1 and 2 of the worker, at the OS level.

A worker's descriptors 1 and 2 point to two scratch files next to the attempt directories
(``<work_root>/.out-HOST-PID`` and ``.err-HOST-PID``), so a task's prints *and* everything its
child processes write (``subprocess``, ``os.system``, C libraries) land there, in the order they
were written (``sys.stdout`` is line-buffered and flushed when the attempt ends). When the
attempt ends, a scratch file that received anything is renamed to the attempt's ``stdout.log``
(``stderr.log``) and a new, empty one takes its place: a quiet task costs two ``fstat`` calls,
no file and no directory; a loud one costs a rename, whatever it wrote, and nothing of it goes
through the memory of the worker or the engine. A worker killed in the middle of an attempt
(walltime, memory, cancel) leaves the scratch files behind; its executor moves them with
:func:`salvage` so the logs of the killed attempt are kept.

Without a file system shared with the engine (``logdir`` None: a Dask worker on another
machine), the scratch files are in the temporary directory and the attempt returns their last
:data:`MEMORY_TAIL` bytes in memory.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from corral.worker.metrics import hostname

STDOUT_NAME = "stdout.log"
STDERR_NAME = "stderr.log"
MEMORY_TAIL = 1 << 20
"""Bytes of each stream an attempt without a shared file system returns (the end of it)."""
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC


def scratch_paths(folder: Path | str, pid: int, host: str | None = None) -> tuple[Path, Path]:
    """The scratch files of the worker ``pid`` on ``host`` in ``folder``."""
    tag = f"{host or hostname()}-{pid}"
    return Path(folder, f".out-{tag}"), Path(folder, f".err-{tag}")


def salvage(folder: Path | str, pid: int, logdir: Path | str) -> None:
    """Move what the killed worker ``pid`` wrote for its running attempt to ``logdir``."""
    for scratch, name in zip(scratch_paths(folder, pid), (STDOUT_NAME, STDERR_NAME), strict=True):
        try:
            if scratch.stat().st_size == 0:
                scratch.unlink()
                continue
            Path(logdir).mkdir(parents=True, exist_ok=True)
            os.replace(scratch, Path(logdir, name))
        except OSError:
            continue


class AttemptOutput:
    """The worker's descriptors 1 and 2, pointed at scratch files; one per worker process."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.saved: tuple[int, int] | None = None
        """The descriptors 1 and 2 the worker started with (restored by :meth:`close`)."""

    def begin(self, logdir: str | None) -> str | None:
        """Before an attempt: descriptors 1 and 2 go to this worker's scratch files in the
        folder of ``logdir`` (the temporary directory if None, or if that folder cannot be
        written). Returns the ``logdir`` to give :meth:`end`."""
        import tempfile

        folder = os.path.dirname(logdir) if logdir else tempfile.gettempdir()
        if folder != self.folder:
            try:
                self._open(folder)
            except OSError:
                if not logdir:
                    raise
                return self.begin(None)
        return logdir

    def _open(self, folder: str) -> None:
        _flush()
        self._drop()
        os.makedirs(folder, exist_ok=True)
        paths = scratch_paths(folder, os.getpid())
        fds = [os.open(path, _FLAGS, 0o644) for path in paths]
        if self.saved is None:
            self.saved = (os.dup(1), os.dup(2))
            line_buffered()
        for fd, new in zip((1, 2), fds, strict=True):
            os.dup2(new, fd)  # dup2 clears close-on-exec: children inherit 1 and 2
            os.close(new)
        self.folder = folder

    def end(self, logdir: str | None, rotate: bool = False) -> tuple[str | None, str | None]:
        """After an attempt: its output becomes ``logdir``'s stdout.log and stderr.log (None:
        the text of their ends is returned). ``rotate``: new scratch files even if nothing was
        written yet (processes kept running still hold the old ones)."""
        _flush()
        if self.folder is None:
            return None, None
        if logdir is not None and not rotate and _untouched(1) and _untouched(2):
            return None, None  # a quiet task: nothing to move
        sizes = (os.fstat(1).st_size, os.fstat(2).st_size)
        texts: list[str | None] = []
        for fd, size, path, name in zip((1, 2), sizes, scratch_paths(self.folder, os.getpid()),
                                        (STDOUT_NAME, STDERR_NAME), strict=True):
            if logdir is None:
                texts.append(_tail(fd, size) if size else None)
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)  # (see _untouched)
                continue
            texts.append(None)
            if size == 0 and not rotate:
                continue
            with contextlib.suppress(FileExistsError):
                os.mkdir(logdir)
            os.replace(path, Path(logdir, name))
            new = os.open(path, _FLAGS, 0o644)
            os.dup2(new, fd)
            os.close(new)
        return texts[0], texts[1]

    def close(self) -> None:
        """Give descriptors 1 and 2 back and remove the (empty) scratch files."""
        _flush()
        self._drop()
        if self.saved is not None:
            for fd, old in zip((1, 2), self.saved, strict=True):
                os.dup2(old, fd)
                os.close(old)
            self.saved = None

    def _drop(self) -> None:
        if self.folder is None:
            return
        for path in scratch_paths(self.folder, os.getpid()):
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()
        self.folder = None


def _untouched(fd: int) -> bool:
    """Nothing was written to ``fd`` (a scratch file, opened for appending: every write, also
    a child process's through the same open file, leaves the offset at the end; one cheap
    system call where ``fstat`` builds a result of a dozen fields)."""
    try:
        return os.lseek(fd, 0, os.SEEK_CUR) == 0
    except OSError:
        return False


def _tail(fd: int, size: int) -> str:
    start = max(0, size - MEMORY_TAIL)
    data = os.pread(fd, size - start, start)
    text = data.decode(errors="replace")
    return (f"[… {start} bytes before]\n" if start else "") + text


def _flush() -> None:
    streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for i, stream in enumerate(streams):
        if stream is not None and stream not in streams[:i]:  # (mostly the same two twice)
            with contextlib.suppress(Exception):
                stream.flush()


def line_buffered() -> None:
    """Python's own prints reach descriptor 1 at each line, as on a terminal, so they keep
    their place among the lines of the task's child processes."""
    for stream in (sys.stdout, sys.__stdout__):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(Exception):
                reconfigure(line_buffering=True)
