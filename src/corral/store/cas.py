"""The content-addressed store: immutable blobs named by their digest, written atomically.

A blob is written to a temporary name, flushed to disk (``fsync``) and only then renamed to its
digest, so a name in the store always holds complete content, even after a power cut.

The engine records many results at once: it writes them with ``deferred=True`` and calls
:meth:`CAS.sync` just before committing the database rows that refer to them. ``sync`` flushes
the pending blobs together (concurrent ``fsync`` calls share the file system's journal commits,
so 32 blobs cost about what one does) and then renames them into place. Until then a pending
blob is readable through this object, and a crash leaves only temporary files behind.

A large value is written by the worker that computed it (:meth:`CAS.adopt`): the worker hashes
the file while writing it and ``fsync``s it before reporting; the engine only renames it into
place. So every blob's content is on disk before its name exists. The renames are not followed by
an ``fsync`` of their folder: after a power cut a blob recorded just before may be missing (never
incomplete), and the task that made it must run again for its result to load.

Output files are not duplicated (:meth:`CAS.keep_file`): the result of a task records the digest
of each output, which stays where the task wrote it. The store keeps a copy-on-write clone of it
where the file system can make one (XFS, Btrfs, ZFS with block cloning: no space used until the
file is changed), else a plain copy of files up to ``CORRAL_OUTPUT_COPY_MAX`` bytes (1 MiB by
default; 0 keeps none) and nothing of larger ones. A cached task whose output is gone is restored
from what is kept, or else runs again; one whose output was changed runs again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from corral.hashing import digest_bytes, file_digest

SYNC_THREADS = 8
"""Concurrent fsync calls in :meth:`CAS.sync`."""

FICLONE = 0x40049409
"""The Linux ioctl that makes ``dst`` a copy-on-write clone of ``src`` (reflink)."""

DEFAULT_COPY_MAX = 1 << 20


def output_copy_max() -> int:
    """Outputs up to this many bytes are copied into the store when they cannot be cloned."""
    text = os.environ.get("CORRAL_OUTPUT_COPY_MAX", "")
    try:
        return int(text) if text else DEFAULT_COPY_MAX
    except ValueError:
        return DEFAULT_COPY_MAX


def reflink(src: Path, dst: Path) -> bool:
    """Make ``dst`` a copy-on-write clone of ``src``; False where the file system cannot."""
    try:
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            fcntl.ioctl(fout.fileno(), FICLONE, fin.fileno())
        return True
    except OSError as exc:
        dst.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        return False


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

    def keep_file(self, path: Path, digest: str, size: int, deferred: bool = False) -> str:
        """What the store keeps of an output file of content ``digest``: ``"clone"`` (a
        reflink), ``"copy"`` (a small file), ``"kept"`` (already there) or ``"none"``."""
        if self._reuse(digest):
            return "kept"
        if not path.is_file():  # a folder: its digest only
            return "none"
        tmp = self._temp(self.path(digest))
        if reflink(path, tmp):
            how = "clone"
        elif size <= output_copy_max():
            shutil.copyfile(path, tmp)
            how = "copy"
        else:
            return "none"
        self._place(digest, tmp, deferred)
        return how

    def adopt(self, path: Path, digest: str) -> None:
        """Move a complete, synced file of content ``digest`` into the store (a worker wrote
        it beside the store); copied if it is on another file system."""
        if self._reuse(digest):
            path.unlink(missing_ok=True)
            return
        target = self.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            tmp = self._temp(target)
            shutil.copyfile(path, tmp)
            self._place(digest, tmp, deferred=False)
            path.unlink(missing_ok=True)

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
        if not reflink(src, tmp):
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
