"""Content-addressed transfers: each file content is sent to a host once.

Staged executors (the ``ssh`` executor without a shared file system) send input files and large
upstream values through :func:`send_once`. The host keeps a cache directory of contents named by
their digest (``<remote_workdir>/.corral-cache/ab/abcdef...``, kept across runs); for a batch of
files one helper call (the remote helper's ``place`` action) tells which contents are there
already and links them into place; only the missing contents are copied (one SFTP batch, with a
progress line for large ones, see :mod:`corral.transport.progress`) and then linked by a second
call. A file used by many tasks, or again by a later run, is thus sent once. Digests come from
:func:`corral.hashing.file_digest`, which reads a file only when its stat signature is new.

Cached contents are hard-linked into the task directories (copied across file systems): a task
that writes into its input file in place changes the cached copy too. The helper checks the
cached size before each use and drops a copy of the wrong size, so a truncated or partial copy
is sent again; a same-size change is not detected. Delete the cache directory to start afresh.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corral.errors import ExecutorError
from corral.hashing import file_digest
from corral.transport.base import Transport

log = logging.getLogger(__name__)

CACHE_DIR = ".corral-cache"
"""Name of the content cache directory under a host's remote work root."""

Helper = Callable[[str, list[dict[str, Any]]], dict[str, Any]]
"""Runs the remote helper: ``(action, items) -> {item id: answer}`` (one SSH command)."""


@dataclass
class Sent:
    """What one :func:`send_once` moved: contents copied (``files``, ``size`` in bytes) and
    files placed from the host's cache without sending anything (``reused``)."""

    files: int = 0
    size: int = 0
    reused: int = 0


def cache_path(cache: str, digest: str) -> str:
    """Where the content ``digest`` is kept in the host's cache directory ``cache``."""
    return posixpath.join(cache, digest[:2], digest)


def send_once(transport: Transport, helper: Helper, cache: str,
              files: Sequence[tuple[str, str | None]]) -> Sent:
    """Make each local file of ``files`` (``(local, remote destination or None)``) present on
    the host: at its destination (linked from the cache), or, with ``None``, only in the cache
    (see :func:`cache_path`). Contents the host has are not sent; each missing content is sent
    once however many files share it. Raises :class:`ExecutorError` if the host cannot place
    a content it was sent."""
    if not files:
        return Sent()
    items: list[dict[str, Any]] = []
    local_of: dict[str, str] = {}
    for i, (local, dest) in enumerate(files):
        digest = file_digest(local)
        size = os.stat(local).st_size
        item: dict[str, Any] = {"id": str(i), "cache": cache_path(cache, digest), "size": size, "dest": dest}
        items.append(item)
        local_of.setdefault(item["cache"], local)
    answer = helper("place", items)
    missing = [it for it in items if not (answer.get(it["id"]) or {}).get("placed")]
    sent = Sent(reused=len(items) - len(missing))
    if not missing:
        log.info("sent nothing to %s: %d file(s) already there", transport, len(items))
        return sent
    contents = list(dict.fromkeys(it["cache"] for it in missing))
    transport.put_many([(local_of[c], c) for c in contents])
    sent.files = len(contents)
    sent.size = sum(os.stat(local_of[c]).st_size for c in contents)
    again = helper("place", missing)
    lost = [it for it in missing if not (again.get(it["id"]) or {}).get("placed")]
    if lost:
        raise ExecutorError(
            f"{transport}: {lost[0]['cache']} was sent but is not in the host's cache; check "
            "the free space and permissions of the remote work directory")
    log.info("sent %d file(s), %d bytes to %s; %d already there", sent.files, sent.size,
             transport, sent.reused)
    return sent


def keep_remote(helper: Helper, cache: str, files: Sequence[tuple[str, str, int]]) -> int:
    """Keep files made on the host (``(remote path, digest, size)``: large results, fetched
    back) in its cache, hard-linked under their digest, so that sending them to that host again
    (as a later task's input value) sends nothing. Returns how many are kept there."""
    if not files:
        return 0
    items: list[dict[str, Any]] = [
        {"id": str(i), "src": src, "cache": cache_path(cache, digest), "size": size}
        for i, (src, digest, size) in enumerate(files)]
    answer = helper("place", items)
    return sum(1 for it in items if (answer.get(it["id"]) or {}).get("placed"))


__all__ = ["CACHE_DIR", "Helper", "Sent", "cache_path", "keep_remote", "send_once"]
