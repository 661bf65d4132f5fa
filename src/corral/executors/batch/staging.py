"""Attempt directories on a scheduler host that does not see the local work directory.

With ``transport = "ssh://..."`` and ``transport_options = { shared_filesystem = false }`` a
batch executor keeps every attempt directory on the login node's side, under
``<remote_workdir>/<run id>/work/<same relative path as locally>``, and runs the tasks in
``<remote_workdir>/<run id>/cwd``. The task's input files (``TaskSpec.inputs``: declared shell
inputs, ``Path`` arguments) are copied there first, with their directories; a file copied (or
fetched back from there) earlier in the run and unchanged since is not copied again, and a file
whose content the login node's content cache (``<remote_workdir>/.corral-cache``) has, from
this run or an earlier one, is linked from there instead of being sent again. Payloads,
job scripts and array listings are written there by SFTP.

When an attempt ends, its markers, result and logs (``exit.json``, ``started.json``,
``result.pkl``, ``stdout.log``, ``stderr.log``, the scheduler's ``.out``/``.err``) and, for a
successful shell task, its declared outputs are copied back to the local attempt directory and
pipeline directory, all finished attempts of one poll in one SFTP batch, before the completion
is reported. The files a successful Python task returned (``Path`` values, listed in its exit
marker) follow in a second batch, to the same relative place under the pipeline directory; a
returned file outside the remote task directory fails the attempt with a one-line error. Then
the remote attempt directory is removed, according to ``remote_cleanup``:

- ``succeeded`` (default): removed after a success; kept after a failure, so the job can be
  inspected or rerun by hand on the cluster (``payload.pkl`` and ``job.sh`` are only there);
- ``all``: always removed once fetched; ``none``: never removed.

A directory whose files could not be fetched is never removed. Array job directories go with
their last element. At shutdown, with nothing in flight, the run's remote directory (staged
inputs, outputs) is removed too unless an attempt directory was kept.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.errors import CommandError, CorralError, ExecutorError
from corral.executors.base import Completion, Outcome, TaskSpec
from corral.hashing import file_digest
from corral.transport.base import Transport
from corral.transport.ssh_helper import REMOTE_HELPER, parse_answer
from corral.transport.staging import (
    Stamp,
    argument_files,
    input_pairs,
    localize_result,
    removable,
    returned_pairs,
    returned_problem,
    stamps,
    value_refs,
)
from corral.transport.transfer import CACHE_DIR, cache_path, send_once
from corral.worker.execute import (
    MARKER_FILE,
    PAYLOAD_FILE,
    RESULT_FILE,
    STARTED_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    ShellPayload,
    stored_result,
)

log = logging.getLogger(__name__)

SCHED_OUT = "scheduler.out"
SCHED_ERR = "scheduler.err"
FETCHED = (MARKER_FILE, STARTED_FILE, RESULT_FILE, STDOUT_FILE, STDERR_FILE, SCHED_OUT, SCHED_ERR)
"""Files of a finished attempt copied back to the local attempt directory."""


@dataclass
class _Staged:
    """What the stager knows about one attempt in flight."""

    local_dir: Path
    known: bool = False
    """Whether ``shell`` and ``outputs`` are known (not after a re-attach: read at the end)."""
    shell: bool = False
    outputs: list[str] = field(default_factory=list)
    """Declared outputs of a shell task."""
    array_dir: str | None = None
    sched_files: list[tuple[str, str]] = field(default_factory=list)
    """(remote, local) scheduler log files of an array element."""


class RemoteStaging:
    """Maps local work paths to the remote side and fetches and removes finished attempts."""

    def __init__(self, transport: Transport, work_root: Path, cwd: Path, run_id: str,
                 remote_workdir: str, cleanup: str) -> None:
        self.transport = transport
        self.work_root = Path(os.path.abspath(work_root))
        self.cwd = Path(os.path.abspath(cwd))
        self.run_id = run_id
        self.remote_workdir = remote_workdir
        self.cleanup = cleanup
        self._base: str | None = None
        self._attempts: dict[str, _Staged] = {}
        self._arrays: dict[str, set[str]] = {}
        """Remote array job directory -> attempt ids not finished yet."""
        self._kept_arrays: set[str] = set()
        self._ready = False
        self._sent: dict[str, Stamp] = {}
        self._cache_ok = True
        """Whether input files go through the content cache (until the helper fails once)."""
        """Local files whose copy in the remote task directory is current: (size, mtime)."""

    # ------------------------------------------------------------------ paths
    @property
    def base(self) -> str:
        """``<remote_workdir>/<run id>`` as an absolute remote path (resolved once)."""
        if self._base is None:
            root = self.transport.realpath(self.remote_workdir)
            self._base = posixpath.join(root, self.run_id)
        return self._base

    @property
    def remote_cwd(self) -> str:
        return posixpath.join(self.base, "cwd")

    def remote(self, local: str | Path) -> str:
        """The remote path of a path under the local work root."""
        rel = os.path.relpath(os.path.abspath(local), self.work_root)
        if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            raise ExecutorError(f"{local} is not under the run's work directory {self.work_root}")
        return posixpath.join(self.base, "work", Path(rel).as_posix())

    # ------------------------------------------------------------------ submission
    def stage(self, spec: TaskSpec) -> None:
        """Create the remote task directory once and copy the task's input files there (those
        already copied, or fetched back from there, and unchanged since are not copied again)."""
        if not self._ready:
            self.transport.makedirs(self.remote_cwd)
            self._ready = True
        inputs = list(dict.fromkeys([*spec.inputs, *argument_files(_unpickled(spec.payload), self.cwd)]))
        pairs = input_pairs(inputs, self.cwd, self.remote_cwd, spec.attempt_id, self._sent)
        if pairs:
            copied = stamps(local for local, _ in pairs)
            self._put(pairs)
            self._sent.update(copied)

    def stage_values(self, payload: bytes) -> dict[str, str]:
        """Send the engine's value files a Python payload names by reference
        (:func:`~corral.transport.staging.value_refs`) to the login node's content cache, each
        content once (plainly, without the helper); returns local file -> remote copy, for
        :func:`~corral.transport.staging.staged_payload`. Used once the engine passes values by
        reference to this executor (``stages_engine_files``)."""
        refs = [r for r in value_refs(payload) if os.path.isfile(r)]
        if not refs:
            return {}
        cache = posixpath.join(posixpath.dirname(self.base), CACHE_DIR)
        values = {r: cache_path(cache, file_digest(r)) for r in refs}
        if self._cache_ok:
            try:
                send_once(self.transport, self._helper, cache, [(r, None) for r in refs])
                return values
            except CommandError as exc:
                self._cache_ok = False
                log.warning("sending values without the content cache (the helper failed on the "
                            "login node; it needs python3 there): %s", exc)
        self.transport.put_many(list(values.items()))
        return values

    def _put(self, pairs: list[tuple[str, str]]) -> None:
        """Copy input files through the login node's content cache
        (``<remote_workdir>/.corral-cache``, :mod:`corral.transport.transfer`: a content it has
        is not sent again, in this run or a later one); directories, and everything if the
        login node has no ``python3`` for the helper, are copied as they are."""
        files = [(loc, rem) for loc, rem in pairs if not os.path.isdir(loc)]
        plain = [(loc, rem) for loc, rem in pairs if os.path.isdir(loc)]
        if files and self._cache_ok:
            cache = posixpath.join(posixpath.dirname(self.base), CACHE_DIR)
            try:
                send_once(self.transport, self._helper, cache, list(files))
                files = []
            except CommandError as exc:
                self._cache_ok = False
                log.warning("copying input files without the content cache (the helper failed "
                            "on the login node; it needs python3 there): %s", exc)
        self.transport.put_many([*plain, *files])

    def _helper(self, action: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """The remote helper run with the login node's ``python3`` (one SSH command)."""
        res = self.transport.run(["python3", "-c", REMOTE_HELPER, action], input=json.dumps(items),
                                 timeout=300.0)
        try:
            return parse_answer(res.stdout)
        except ValueError as exc:
            raise CommandError(res.argv[:1] + [action], res.returncode, res.stdout, str(exc)) from exc

    def track(self, attempt_id: str, local_dir: Path, payload: bytes | None,
              array_dir: str | None = None, sched_err: Path | None = None) -> None:
        """Remember a submitted (or re-attached) attempt until :meth:`fetch`."""
        staged = _Staged(local_dir, array_dir=array_dir)
        if payload is not None:
            staged.known = True
            staged.shell, staged.outputs = _describe(payload)
        if array_dir is not None and sched_err is not None:
            sched_out = Path(str(sched_err).replace(SCHED_ERR, SCHED_OUT))
            staged.sched_files = [(self.remote(p), str(p)) for p in (sched_err, sched_out)]
            self._arrays.setdefault(array_dir, set()).add(attempt_id)
        self._attempts[attempt_id] = staged

    # ------------------------------------------------------------------ completion
    def fetch(self, completions: list[Completion]) -> None:
        """Copy finished attempts back (one SFTP batch), then remove their remote directories."""
        staged = [(c, self._attempts.pop(c.attempt_id, None)) for c in completions]
        pairs: list[tuple[str, str]] = []
        for comp, st in staged:
            if st is not None:
                pairs += self._pairs(comp, st)
        try:
            got = set(self.transport.get_many(pairs))
        except CorralError as exc:
            log.warning("could not fetch %d finished attempt(s) from %s; their remote "
                        "directories are kept: %s", len(completions), self.base, exc)
            for comp, st in staged:
                if st is not None:
                    _lose(comp, f"its files could not be fetched back from {self.base}: {exc}")
            return
        for comp, st in staged:
            if st is None or comp.outcome is not Outcome.SUCCEEDED:
                continue
            # the outputs are in the remote task directory too: no need to send them back
            self._sent.update(stamps(str(self.cwd / o) for o in st.outputs if not os.path.isabs(o)
                                     and posixpath.join(self.remote_cwd, o) in got))
            if posixpath.join(self.remote(st.local_dir), RESULT_FILE) in got:
                comp.result = stored_result(st.local_dir / RESULT_FILE,
                                            _local_marker(st.local_dir))
            elif not st.shell:
                _lose(comp, f"its {RESULT_FILE} is missing from {self.remote(st.local_dir)}")
        self._fetch_returned([(c, st) for c, st in staged if st is not None and not st.shell])
        self._remove([(c, st) for c, st in staged if st is not None])

    def _fetch_returned(self, staged: list[tuple[Completion, _Staged]]) -> None:
        """Copy back the files successful Python tasks returned (listed in their exit markers,
        fetched above) into the same relative place under the pipeline directory, in one more
        SFTP batch; a file outside the remote task directory fails the attempt, one that did not
        come back makes it LOST."""
        wanted: list[tuple[Completion, list[tuple[str, str]], str | None]] = []
        markers: dict[str, dict[str, Any]] = {}
        for comp, st in staged:
            if comp.outcome is Outcome.SUCCEEDED:
                markers[comp.attempt_id] = marker = _local_marker(st.local_dir)
                wanted.append((comp, *returned_pairs(marker, self.remote_cwd, self.cwd)))
        pairs = [pair for _, found, _ in wanted for pair in found]
        try:
            got = set(self.transport.get_many(pairs)) if pairs else set()
        except CorralError as exc:
            log.warning("could not fetch the files returned by %d task(s): %s", len(wanted), exc)
            got = set()
        self._sent.update(stamps(local for remote, local in pairs if remote in got))
        for comp, found, error in wanted:
            problem = returned_problem(found, error, got)
            if problem is not None:
                comp.outcome, comp.error, comp.result = Outcome(problem[0]), problem[1], None
            else:
                comp.result = localize_result(comp.result, markers[comp.attempt_id],
                                              self.remote_cwd, self.cwd)

    def _pairs(self, comp: Completion, st: _Staged) -> list[tuple[str, str]]:
        remote_dir = self.remote(st.local_dir)
        pairs = [(posixpath.join(remote_dir, n), str(st.local_dir / n)) for n in FETCHED]
        pairs += st.sched_files
        if comp.outcome is Outcome.SUCCEEDED:
            if not st.known:
                data = self._remote_payload(remote_dir)
                st.shell, st.outputs = _describe(data) if data else (False, [])
                st.known = True
            for out in st.outputs:
                if os.path.isabs(out):  # fetched from the same path on the host
                    pairs.append((out, out))
                else:
                    pairs.append((posixpath.join(self.remote_cwd, out), str(self.cwd / out)))
        return pairs

    def _remote_payload(self, remote_dir: str) -> bytes | None:
        """The payload of a re-attached attempt (what kind of task, which outputs)."""
        try:
            return self.transport.read_bytes(posixpath.join(remote_dir, PAYLOAD_FILE))
        except CorralError:
            return None

    def _remove(self, done: list[tuple[Completion, _Staged]]) -> None:
        trees: list[str] = []
        for comp, st in done:
            drop = removable(self.cleanup, comp.outcome is Outcome.SUCCEEDED)
            if drop:
                trees.append(self.remote(st.local_dir))
            if st.array_dir is None:
                continue
            left = self._arrays.get(st.array_dir, set())
            left.discard(comp.attempt_id)
            if not drop:
                self._kept_arrays.add(st.array_dir)
            if not left:
                self._arrays.pop(st.array_dir, None)
                if st.array_dir not in self._kept_arrays:
                    trees.append(st.array_dir)
        if trees:
            try:
                self.transport.remove_trees(trees)
            except CorralError as exc:
                log.warning("could not remove staged directories on %s: %s", self.base, exc)

    def finish_run(self) -> None:
        """With nothing in flight: remove the run's remote directory unless something was kept
        there (a failed attempt's directory, by this or an earlier engine)."""
        if self.cleanup == "none" or self._attempts or self._base is None:
            return
        work = posixpath.join(self.base, "work")
        try:
            for path in (posixpath.join(work, "arrays"), work):
                self.transport.remove_dir(path)
            if not self.transport.exists(work):
                self.transport.remove_trees([self.base])
        except CorralError as exc:
            log.warning("could not remove the staged run directory %s: %s", self.base, exc)


def _unpickled(payload: bytes) -> Any:
    try:
        return pickle.loads(payload)
    except Exception:  # an unreadable payload: the worker says so; treat it as Python
        return None


def _describe(payload: bytes) -> tuple[bool, list[str]]:
    """Whether a payload is a shell task's, and its declared outputs."""
    obj = _unpickled(payload)
    if isinstance(obj, ShellPayload):
        return True, list(obj.outputs)
    return False, []


def _local_marker(local_dir: Path) -> dict[str, Any]:
    """The exit marker fetched back into ``local_dir`` (empty if unreadable)."""
    try:
        marker = json.loads((local_dir / MARKER_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return marker if isinstance(marker, dict) else {}


def _lose(comp: Completion, why: str) -> None:
    """A success whose files did not come back cannot be trusted: it is LOST (retried)."""
    if comp.outcome is Outcome.SUCCEEDED:
        comp.outcome = Outcome.LOST
        comp.error = f"the attempt succeeded on the cluster, but {why}"
        comp.result = None


__all__ = ["FETCHED", "SCHED_ERR", "SCHED_OUT", "RemoteStaging"]
