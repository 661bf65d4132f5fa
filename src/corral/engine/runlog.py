"""The run's own log: what libraries say while a run executes, kept in its work directory.

Records of Corral's loggers and of the libraries an executor drives (dask ``distributed`` runs
its scheduler and nannies in the engine's process and logs every step at INFO) go to
``<work root>/engine.log`` while the engine runs (appended on resume). On the terminal, those
libraries' records below WARNING are held back, so ``corral run -q`` and ``--json`` print
nothing but Corral's own lines, and the progress display is not interleaved with them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

LOG_FILE = "engine.log"
LOGGERS = ("corral", "distributed")
"""Loggers whose records go to the run's log."""
LIBRARIES = ("distributed",)
"""Loggers whose records below WARNING are kept off the terminal."""


class _LibraryInfo(logging.Filter):
    """Drops the records below WARNING of :data:`LIBRARIES` (for handlers on the terminal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == n or record.name.startswith(n + ".") for n in LIBRARIES)


class _FileHandler(logging.Handler):
    """Appends records to a file. Not a ``logging.StreamHandler``: dask's ``silence_logs``
    lowers every stream handler of the ``distributed`` logger to WARNING, files included."""

    def __init__(self, path: Path) -> None:
        super().__init__(logging.INFO)
        self.file = open(path, "a", encoding="utf-8")  # closed in close()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.file.write(self.format(record) + "\n")
            self.file.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.file.close()
        super().close()


def _terminal_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in LIBRARIES)]
    return [h for lg in loggers for h in lg.handlers
            if getattr(h, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)]


@contextlib.contextmanager
def run_log(work_root: Path) -> Iterator[Path]:
    """Send the run's log records to ``work_root/engine.log``; keep libraries' chatter off
    the terminal meanwhile."""
    work_root.mkdir(parents=True, exist_ok=True)
    path = work_root / LOG_FILE
    handler = _FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in LOGGERS:
        logging.getLogger(name).addHandler(handler)
    hold = _LibraryInfo()
    for h in _terminal_handlers():
        h.addFilter(hold)
    try:
        yield path
    finally:
        for h in _terminal_handlers():
            h.removeFilter(hold)
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()
