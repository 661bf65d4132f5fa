"""A job's result files: listed and served only from inside the job's directory.

A requested path is refused (404, as a file that does not exist) when it is absolute, has a ``..``
part, a NUL byte or a backslash, or resolves (symlinks followed) outside the job's directory; the
attempt's own files (``.corral/``: the job script, the payload) are not results and are not served
(the logs are, through ``/logs``). Files go out as ``application/octet-stream`` attachments with
``X-Content-Type-Options: nosniff`` and a sandboxing ``Content-Security-Policy``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from .settings import ATTEMPT_DIR
from .store import NotFound

MAX_LISTED = 10_000
"""At most this many files in one listing."""
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
                "Cache-Control": "no-store"}


def list_files(jobdir: Path) -> list[dict[str, Any]]:
    """The regular files under ``jobdir`` (relative POSIX paths and sizes), sorted; symlinks and
    the attempt's own directory are left out."""
    found: list[dict[str, Any]] = []
    if not jobdir.is_dir():
        return found
    for root, dirs, files in os.walk(jobdir, followlinks=False):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not (here == jobdir and d == ATTEMPT_DIR)
                         and not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            found.append({"path": path.relative_to(jobdir).as_posix(), "size": path.stat().st_size})
            if len(found) >= MAX_LISTED:
                return found
    return found


def resolve(jobdir: Path, requested: str) -> Path:
    """The file ``requested`` names inside ``jobdir``, or NotFound naming why it is refused."""
    why = _refusal(requested)
    if why is None:
        base = jobdir.resolve()
        target = (base / requested).resolve()
        if not target.is_relative_to(base):
            why = "it leads out of the job's directory"
        elif target.is_relative_to(base / ATTEMPT_DIR):
            why = "the job's own .corral directory is not a result (use /logs)"
        elif not target.is_file():
            why = "no such file"
        else:
            return target
    raise NotFound(f"file {requested[:200]!r}: {why}")


def _refusal(requested: str) -> str | None:
    if not requested or "\0" in requested or "\\" in requested:
        return "empty, or it has a NUL byte or a backslash"
    path = PurePosixPath(requested)
    if path.is_absolute():
        return "absolute paths are refused; name it relative to the job's directory"
    if ".." in path.parts:
        return "'..' is refused"
    return None


def attachment_headers(path: Path) -> dict[str, str]:
    """Headers that make a browser save the file, never render it."""
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in path.name) or "file"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(path.name, safe='')}"
    return {"Content-Disposition": disposition, **SAFE_HEADERS}
