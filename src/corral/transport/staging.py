"""Staging attempts on a machine that does not share the pipeline directory.

Used by the executors that stage attempts over SSH (the ``ssh`` executor and the batch
executors with ``shared_filesystem = false``): which ``(local, remote)`` copies a task's input
files need, the ``(size, mtime)`` stamps that let them skip files already copied earlier in the
run, the ``remote_cleanup`` policy for remote attempt directories once their files are back,
and which files a Python task returned (listed in its exit marker) are to be fetched back.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import logging
import os
import pickle
import posixpath
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

import cloudpickle

from corral.errors import CorralError
from corral.pickling import dumps
from corral.transport.base import Transport
from corral.transport.transfer import Helper, Sent, send_once
from corral.worker.execute import PythonPayload, ResultRef, StoredResult, load_file, returned_files

log = logging.getLogger(__name__)

CLEANUP_CHOICES = ("succeeded", "all", "none")
"""Values of ``remote_cleanup``: which remote attempt directories are removed once fetched."""

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


def returned_pairs(marker: Mapping[str, Any], remote_cwd: str, cwd: Path) -> tuple[list[tuple[str, str]], str | None]:
    """``(remote, local)`` copies of the files a Python task returned, as its exit marker lists
    them (``files``: paths relative to the task directory, see
    :func:`corral.worker.execute.returned_files`), into the same relative place under ``cwd``;
    and a one-line error if one of them lies outside the remote task directory ``remote_cwd``
    (absolute, or up through ``..``): the engine could not store or pass on such a file."""
    files = marker.get("files")
    names = [str(f) for f in files] if isinstance(files, list) else []
    pairs: list[tuple[str, str]] = []
    for name in names:
        rel = posixpath.normpath(name)
        if posixpath.isabs(rel) or rel == ".." or rel.startswith("../"):
            return [], (
                f"the task returned the file {name}, outside its remote task directory "
                f"{remote_cwd}, so it cannot be fetched back; return a path relative to the task's "
                "directory (e.g. Path('out/x.txt')), or use shared_filesystem = true if every "
                "machine sees that path")
        pairs.append((posixpath.join(remote_cwd, rel), str(cwd / rel)))
    return pairs, None


def localize_result(result: bytes | None, marker: Mapping[str, Any], remote_cwd: str,
                    cwd: Path) -> bytes | None:
    """A Python task's pickled value in which the absolute remote paths of the files it returned
    (``files`` of its exit marker, fetched back into ``cwd``) name their local copies instead:
    ``Path.cwd() / "x.png"`` returned on the host becomes ``<cwd>/x.png``. Other paths and
    values, and a value that cannot be unpickled here, are left as they are. (A large value
    with such paths is loaded here for that; without any it stays in its file.)"""
    files = marker.get("files")
    fetched = {posixpath.normpath(str(f)) for f in files} if isinstance(files, list) else set()
    if not result or not fetched:
        return result
    try:
        value = cloudpickle.loads(result)
        if isinstance(value, StoredResult):  # a large value in its file: loaded (mapped)
            value = load_file(value.path)
    except Exception:  # the engine reports it when it loads the value
        return result
    moved, changed = move_paths(value, remote_cwd, os.fspath(cwd), fetched)
    return dumps(moved) if changed else result


def move_paths(value: Any, src_root: str, dst_root: str,
               only: set[str] | None = None) -> tuple[Any, bool]:
    """(``value`` with every absolute path under ``src_root`` moved to the same place under
    ``dst_root``, whether any was); with ``only``, just the paths whose relative form is in
    it. Paths inside lists, tuples and dicts are found, as the worker finds returned files;
    each keeps its class."""
    if isinstance(value, PurePath):
        if not value.is_absolute():
            return value, False
        rel = posixpath.relpath(posixpath.normpath(value.as_posix()), posixpath.normpath(src_root))
        if rel == ".." or rel.startswith("../") or (only is not None and rel not in only):
            return value, False
        return type(value)(dst_root if rel == "." else posixpath.join(dst_root, rel)), True
    if isinstance(value, list | tuple):
        pairs = [move_paths(v, src_root, dst_root, only) for v in value]
        if any(changed for _, changed in pairs):
            return _rebuilt(value, [v for v, _ in pairs]), True
    elif isinstance(value, dict):
        moved = {k: move_paths(v, src_root, dst_root, only) for k, v in value.items()}
        if any(changed for _, changed in moved.values()):
            copy = _copy.copy(value)  # keeps the class (OrderedDict, defaultdict...)
            copy.update((k, v) for k, (v, _) in moved.items())
            return copy, True
    return value, False


def _rebuilt(value: list[Any] | tuple[Any, ...], items: list[Any]) -> Any:
    """A list or tuple of the same class as ``value`` holding ``items`` (a namedtuple too)."""
    if isinstance(value, tuple) and hasattr(value, "_make"):
        return value._make(items)
    if type(value) in (list, tuple):
        return type(value)(items)
    copy = _copy.copy(value)  # a subclass: its other state kept
    if isinstance(copy, list):
        copy[:] = items
        return copy
    return type(value)(items)


def _payload_args(data: bytes) -> tuple[PythonPayload, Any] | None:
    """A Python payload and its unpickled arguments; None for another or unreadable payload."""
    try:
        payload = pickle.loads(data)
        if not isinstance(payload, PythonPayload):
            return None
        return payload, cloudpickle.loads(payload.args)
    except Exception:  # the worker reports it
        return None


def value_refs(data: bytes) -> list[str]:
    """The files of the upstream values a Python payload's arguments name by reference
    (:class:`~corral.worker.execute.ResultRef`, also inside lists, tuples and dicts): the
    engine's stored blobs, which a host without a shared file system must be sent."""
    found = _payload_args(data)
    refs: list[str] = []

    def note(ref: ResultRef) -> ResultRef:
        refs.append(ref.path)
        return ref

    if found is not None:
        _walk_refs(found[1], note)
    return list(dict.fromkeys(refs))


def _walk_refs(value: Any, fn: Callable[[ResultRef], Any]) -> Any:
    """``value`` with each :class:`ResultRef` replaced by ``fn(ref)`` (lists, tuples, dicts)."""
    if isinstance(value, ResultRef):
        return fn(value)
    if isinstance(value, list | tuple):
        return _rebuilt(value, [_walk_refs(v, fn) for v in value])
    if isinstance(value, dict):
        copy = _copy.copy(value)
        copy.update((k, _walk_refs(v, fn)) for k, v in value.items())
        return copy
    return value


def staged_payload(data: bytes, cwd: Path, remote_cwd: str,
                   values: Mapping[str, str] | None = None) -> bytes:
    """``payload.pkl`` as the remote side needs it: a Python task's absolute argument paths
    inside the pipeline directory ``cwd`` name the same place under ``remote_cwd``, where
    :func:`input_pairs` copies the files (a path returned by an upstream task is one); and
    with ``values`` (local file -> remote file), the upstream values passed by reference
    (:func:`value_refs`) name their remote copies. Returns ``data`` itself when nothing moves."""
    found = _payload_args(data)
    if found is None:
        return data
    payload, args = found
    moved, changed = move_paths(args, os.fspath(cwd), remote_cwd)
    if values:
        moved = _walk_refs(moved, lambda ref: ResultRef(values.get(ref.path, ref.path)))
        changed = True
    if not changed:
        return data
    new_args = dumps(moved)
    return pickle.dumps(dataclasses.replace(payload, args=new_args), protocol=pickle.HIGHEST_PROTOCOL)


def returned_problem(pairs: Sequence[tuple[str, str]], error: str | None,
                     got: set[str]) -> tuple[str, str] | None:
    """What is wrong with a Python task's success given its :func:`returned_pairs` and the
    remote paths fetched: ``("failed", error)`` for a file outside its task directory,
    ``("lost", why)`` (retried) for a returned file that did not come back; else None."""
    if error is not None:
        return "failed", error
    missing = [remote for remote, _ in pairs if remote not in got]
    if missing:
        return "lost", f"the attempt succeeded, but the file it returned, {missing[0]}, could not be fetched"
    return None


def argument_files(payload: Any, cwd: Path) -> list[str]:
    """Existing files named by ``Path`` values among a Python payload's arguments (also inside
    lists, tuples and dicts). Upstream values are in by then, so this includes the files
    upstream Python tasks returned, which ``TaskSpec.inputs`` cannot list."""
    if not isinstance(payload, PythonPayload):
        return []
    try:
        args = cloudpickle.loads(payload.args)
    except Exception:  # the worker reports an unreadable payload
        return []
    return returned_files(args, cwd)


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


def removable(cleanup: str, succeeded: bool) -> bool:
    """Whether ``remote_cleanup = cleanup`` removes a fetched attempt directory: ``all`` always,
    ``succeeded`` after a success (a failure is kept for inspection), ``none`` never."""
    return cleanup == "all" or (cleanup == "succeeded" and succeeded)


def remove_run_dir(transport: Transport, base: str, allowed: Iterable[str]) -> bool:
    """Remove the remote run directory ``base`` if it holds nothing but ``allowed`` names (a
    kept attempt directory keeps it all, so the kept attempt can still run in its task
    directory). Failures are logged; returns whether it was removed."""
    try:
        names = transport.listdir(base)
        if names is None:
            return True
        if not set(names) <= set(allowed):
            return False
        transport.remove_trees([base])
    except CorralError as exc:
        log.warning("could not remove the staged run directory %s: %s", base, exc)
        return False
    return True


class StagedRun:
    """One run's staged directory on one machine, as an executor sees it over ``transport``:
    which input files are current there, and whether an attempt directory was kept there."""

    def __init__(self, transport: Transport, cleanup: str, helper: Helper | None = None) -> None:
        self.transport = transport
        self.cleanup = cleanup
        self.helper = helper
        """Runs the remote helper there: with it, files go through the host's content cache
        (:func:`corral.transport.transfer.send_once`), each content sent once."""
        self.cache = ""
        """The host's content cache directory (set once its work root is known)."""
        self.sent: dict[str, Stamp] = {}
        """Local files whose copy in the remote task directory is current."""
        self.used = False
        """Whether attempts were staged (or re-attached) there."""
        self.kept = False
        """Whether an attempt directory was kept there (then the run directory stays too)."""

    def put(self, files: Sequence[tuple[str, str]], inputs: Sequence[tuple[str, str]],
            values: Sequence[str] = ()) -> Sent:
        """Copy ``files`` as they are, and ``inputs`` (``(local, remote)``; from
        :func:`input_pairs`) and ``values`` (local files, see :func:`value_refs`; put in the
        host's cache only) through the host's content cache when there is a helper; the inputs
        are remembered as current there. Returns what the content cache moved."""
        copied = stamps(local for local, _ in inputs)
        if self.helper is None or not self.cache:
            self.transport.put_many([*files, *inputs])
            self.sent.update(copied)
            return Sent()
        plain = [*files, *((loc, rem) for loc, rem in inputs if os.path.isdir(loc))]
        cached: list[tuple[str, str | None]] = [(loc, rem) for loc, rem in inputs if not os.path.isdir(loc)]
        cached += [(v, None) for v in values]
        self.transport.put_many(plain)
        sent = send_once(self.transport, self.helper, self.cache, cached)
        self.sent.update(copied)
        return sent

    def get(self, files: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]]) -> set[str]:
        """Copy back ``files`` and ``outputs`` (``(remote, local)``) in one batch; returns the
        remote paths that existed. Outputs fetched from the remote task directory are current
        there: a later task reading one does not need it copied again."""
        got = set(self.transport.get_many([*files, *outputs]))
        self.sent.update(stamps(local for remote, local in outputs if remote in got))
        return got

    def remove(self, attempts: Sequence[tuple[str, bool]]) -> None:
        """Remove fetched attempt directories (``(remote dir, succeeded)``) per ``cleanup``."""
        trees = [d for d, ok in attempts if removable(self.cleanup, ok)]
        self.kept = self.kept or len(trees) < len(attempts)
        try:
            self.transport.remove_trees(trees)
        except CorralError as exc:
            self.kept = True
            log.warning("could not remove staged attempt directories: %s", exc)

    def finish(self, base: str, allowed: Iterable[str]) -> None:
        """With nothing in flight there: remove the run directory ``base`` unless an attempt
        directory was kept, or ``cleanup`` is ``none`` (see :func:`remove_run_dir`)."""
        if self.used and not self.kept and self.cleanup != "none":
            remove_run_dir(self.transport, base, allowed)


__all__ = ["CLEANUP_CHOICES", "Stamp", "StagedRun", "argument_files", "input_pairs", "remove_run_dir", "removable",
           "returned_pairs", "returned_problem", "stamps", "value_refs"]
