"""The content-addressed store: immutable blobs named by their digest, written atomically.

A blob is written to a temporary name, flushed to disk (``fsync``) and only then renamed to its
digest, so a name in the store always holds complete content, even after a power cut.

The engine records many results at once: it writes them with ``deferred=True`` and calls
:meth:`CAS.sync` just before committing the database rows that refer to them. ``sync`` flushes
the pending blobs together (concurrent ``fsync`` calls share the file system's journal commits,
so 32 blobs cost about what one does) and then renames them into place. Until then a pending
blob is readable through this object, and a crash leaves only temporary files behind.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.hashing import digest_bytes, file_digest

SYNC_THREADS = 8
"""Concurrent fsync calls in :meth:`CAS.sync`."""


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CAS:
    """Blobs under ``root/ab/cdef...``; a blob is visible only once completely written."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._pending: dict[str, Path] = {}
        """Digest -> temporary file written but not yet synced and renamed into place."""

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return digest in self._pending or self.path(digest).exists()

    def _temp(self, target: Path) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.with_name(f".{target.name}.{os.getpid()}.tmp")

    def _place(self, digest: str, tmp: Path, deferred: bool) -> None:
        if deferred:
            self._pending[digest] = tmp
        else:
            _fsync_path(tmp)
            os.replace(tmp, self.path(digest))

    def _reuse(self, digest: str) -> bool:
        """Whether the blob exists; if so its time is renewed, so that a concurrent
        ``corral clean`` (which spares recent blobs) does not take it from the new row."""
        if digest in self._pending:
            return True
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def put_bytes(self, data: bytes, deferred: bool = False) -> str:
        """Store ``data``; with ``deferred`` it is durable only after :meth:`sync`."""
        digest = digest_bytes(data)
        if not self._reuse(digest):
            tmp = self._temp(self.path(digest))
            with open(tmp, "wb") as fh:
                fh.write(data)
            self._place(digest, tmp, deferred)
        return digest

    def put_file(self, path: Path, deferred: bool = False) -> str:
        """Copy a file into the store (content digest as computed by :func:`file_digest`)."""
        digest = file_digest(path)
        if not self._reuse(digest) and path.is_file():
            tmp = self._temp(self.path(digest))
            shutil.copyfile(path, tmp)
            self._place(digest, tmp, deferred)
        return digest

    def sync(self) -> None:
        """Make every deferred blob durable and visible under its digest."""
        if not self._pending:
            return
        items = list(self._pending.items())
        if len(items) == 1:
            _fsync_path(items[0][1])
        else:
            with ThreadPoolExecutor(min(SYNC_THREADS, len(items))) as pool:
                list(pool.map(_fsync_path, [tmp for _, tmp in items]))
        for digest, tmp in items:
            os.replace(tmp, self.path(digest))
            del self._pending[digest]

    def get_bytes(self, digest: str) -> bytes:
        return self._pending.get(digest, self.path(digest)).read_bytes()

    def restore(self, digest: str, dest: Path) -> bool:
        """Copy a blob to ``dest`` atomically; False if the blob is missing."""
        src = self._pending.get(digest, self.path(digest))
        if not src.exists():
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.corral-restore.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        return True

    def remove(self, digest: str) -> int:
        p = self.path(digest)
        try:
            size = p.stat().st_size
            p.unlink()
            return size
        except FileNotFoundError:
            return 0

    def digests(self) -> list[str]:
        if not self.root.exists():
            return []
        return [
            d.name + f.name
            for d in self.root.iterdir() if d.is_dir() and len(d.name) == 2
            for f in d.iterdir() if not f.name.startswith(".")
        ]
