"""SQLite's write-ahead log, switched on safely when several processes open a fresh file."""

from __future__ import annotations

import sqlite3
import time
from typing import Any


def use_wal(cursor: Any, wait_seconds: float) -> None:
    """Put the database of ``cursor`` (a DB-API cursor of :mod:`sqlite3`) in WAL mode: once per
    file, a no-op after.

    On a fresh file, two connections that switch at the same moment both hold a shared lock and
    want an exclusive one. SQLite answers one of them "database is locked" at once, busy timeout
    or not, since waiting could deadlock. That one tries again here, for up to ``wait_seconds``:
    by then the other has switched the file, and there is nothing left to do."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.005
    while True:
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
