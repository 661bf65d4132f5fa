"""Staging attempts on a machine that does not share the pipeline directory.

Used by the executors that stage attempts over SSH (the ``ssh`` executor and the batch
executors with ``shared_filesystem = false``): which ``(local, remote)`` copies a task's input
files need, and the ``(size, mtime)`` stamps that let them skip files already copied earlier in
the run.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

Stamp = tuple[int, int]
"""``(size, mtime in ns)`` of a local file when it was copied."""


def input_pairs(inputs: Iterable[str], cwd: Path, remote_cwd: str, attempt_id: str,
                sent: Mapping[str, Stamp]) -> list[tuple[str, str]]:
    """``(local, remote)`` copies of a task's input files into the remote task directory.

    Relative paths (and absolute ones inside ``cwd``) keep their place under ``remote_cwd``,
    with their directories; absolute paths elsewhere must exist on the remote side and are not
    copied. Files whose ``(size, mtime)`` is in ``sent`` are up to date there already."""
    pairs: list[tuple[str, str]] = []
    for name in inputs:
        path = Path(name)
        if path.is_absolute():
            try:
                path = path.relative_to(cwd)
            except ValueError:
                log.debug("not staging %s: outside the pipeline directory", name)
                continue
        local = cwd / path
        stamp = _stamp(str(local))
        if stamp is None:
            log.warning("input %s of %s does not exist; not staged", local, attempt_id)
        elif sent.get(str(local)) != stamp:
            pairs.append((str(local), posixpath.join(remote_cwd, path.as_posix())))
    return pairs


def stamps(paths: Iterable[str]) -> dict[str, Stamp]:
    """``(size, mtime)`` of the existing ``paths``, to skip copying them again."""
    found = {p: _stamp(p) for p in paths}
    return {p: s for p, s in found.items() if s is not None}


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


__all__ = ["Stamp", "input_pairs", "stamps"]
