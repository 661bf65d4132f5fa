"""The content-addressed store: immutable blobs named by their digest, written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from corral.hashing import digest_bytes, file_digest


class CAS:
    """Blobs under ``root/ab/cdef...``; a blob is visible only once completely written."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def put_bytes(self, data: bytes) -> str:
        digest = digest_bytes(data)
        target = self.path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        return digest

    def put_file(self, path: Path) -> str:
        """Copy a file into the store (content digest as computed by :func:`file_digest`)."""
        digest = file_digest(path)
        target = self.path(digest)
        if not target.exists() and path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(path, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        return digest

    def get_bytes(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def restore(self, digest: str, dest: Path) -> bool:
        """Copy a blob to ``dest`` atomically; False if the blob is missing."""
        src = self.path(digest)
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
