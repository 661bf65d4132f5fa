"""The file digest cache: digests of files by their stat signature, kept next to the state store.

``corral run`` hashes every input file to key the tasks that read it, and every declared output
to check a cached result. Reading a 2 GB file costs seconds and a terabyte of inputs minutes, on
every run, to find nothing changed. :func:`corral.hashing.file_digest` looks here first: a file
whose (device, inode, size, mtime_ns, ctime_ns) are those it had when hashed still has that
content (a write changes its ctime, which no one can set back), so it is not read again. A file
touched without change is read once more, under its new signature, and keeps its digest.

The cache is a small SQLite file (``.corral/digests.db``) apart from the state store: it is only a
cache (lost or corrupt, it is rebuilt by hashing), written without waiting for the disk, by any
process (engine, workers, concurrent runs), whatever database holds the state.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from corral.hashing import Signature
from corral.store.wal import use_wal

_SCHEMA = """CREATE TABLE IF NOT EXISTS digests (
    device INTEGER NOT NULL, inode INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL,
    PRIMARY KEY (device, inode))"""


class StatDigestCache:
    """Digests by file signature in ``path``; every failure is a miss (it is only a cache)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self.broken = False

    def _connect(self) -> sqlite3.Connection | None:
        if self.broken:
            return None
        if self._conn is None or self._pid != os.getpid():  # forked: a connection of its own
            if not self.path.parent.is_dir():  # the store's folder went away (a test's)
                return None
            try:
                conn = sqlite3.connect(self.path, timeout=2.0, check_same_thread=False,
                                       isolation_level=None)
                use_wal(conn.cursor(), 2.0)
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute(_SCHEMA)
            except sqlite3.Error:
                self.broken = True
                return None
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get(self, sig: Signature) -> str | None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return None
            try:
                row = conn.execute(
                    "SELECT size, mtime_ns, ctime_ns, digest FROM digests "
                    "WHERE device = ? AND inode = ?", sig[:2]).fetchone()
            except sqlite3.Error:
                return None
        if row is None or tuple(row[:3]) != sig[2:]:
            return None
        return str(row[3])

    def put(self, sig: Signature, digest: str) -> None:
        with self._lock:
            conn = self._connect()
            if conn is None:
                return
            try:
                conn.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?)",
                             (*sig, digest))
            except sqlite3.Error:
                pass  # busy or full: the file is hashed again next time

    def clear(self) -> None:
        """Forget every digest (``corral clean``, ``--rehash``)."""
        with self._lock:
            conn = self._connect()
            if conn is not None:
                try:
                    conn.execute("DELETE FROM digests")
                except sqlite3.Error:
                    pass

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
