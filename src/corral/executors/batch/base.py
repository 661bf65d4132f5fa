"""The batch-scheduler executor: all I/O, submission, the status cycle and fault classification.

A scheduler module (``slurm.py``, ``sge.py``, ``pbs.py``, ``lsf.py``) subclasses
:class:`BatchExecutor` and only *builds* argv lists and *parses* their output: directives for a
:class:`~corral.executors.batch.script.JobRequest`, the submit and cancel commands, and the
status query. Everything else lives here:

- ``submit`` writes each attempt's ``payload.pkl``, groups specs that share ``group``, resources
  and environment into one array job (``--array LIST``), renders the script, runs the submit
  command through the :class:`~corral.transport.base.Transport` and tells the listener the native
  ids. A submission refused for a job limit stays queued here and is retried later.
- ``poll`` is the one poll-time check: it scans exit markers of in-flight attempts (that is how
  completions are learned) and at most once per interval runs one batched status query for every
  job of the run, with back-off from ``poll_interval`` to ``max_poll_interval`` while nothing
  changes. Jobs that ended without a marker are classified from the scheduler's state after a
  grace period for slow shared file systems.
- Without a shared file system (an SSH transport with ``shared_filesystem = false``), every
  attempt path is mapped to the scheduler's side by :class:`~corral.executors.batch.staging.
  RemoteStaging`; finished attempts are fetched back at the end of the poll-time check, before
  they are reported, and their remote directories removed per ``remote_cleanup``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from corral.errors import CommandError, CorralError, ExecutorError
from corral.executors.base import (
    AttemptRef,
    Completion,
    Executor,
    ExecutorContext,
    Listener,
    Metrics,
    Outcome,
    TaskKind,
    TaskSpec,
)
from corral.executors.batch.script import (
    JobRequest,
    ScriptBody,
    directive_arg,
    directive_value,
    job_name,
    render,
    sanitize_name,
    tail,
)
from corral.executors.batch.settings import BatchSettings, parse_settings
from corral.executors.batch.staging import SCHED_ERR, SCHED_OUT, RemoteStaging
from corral.executors.batch.status import (
    OUTCOME_OF_STATE,
    JobState,
    JobStatus,
    killed_for_memory,
)
from corral.launchers import effective_launcher, launch_argv, launched_payload
from corral.resources import Resources, format_memory, format_walltime
from corral.transport import transport_from_profile
from corral.transport.base import CommandResult, Transport
from corral.transport.local import LocalTransport
from corral.transport.staging import staged_payload
from corral.worker.execute import (
    MARKER_FILE,
    PAYLOAD_FILE,
    RESULT_FILE,
    STARTED_FILE,
    STDERR_FILE,
    stored_result,
)

log = logging.getLogger(__name__)

SCRIPT_FILE = "job.sh"
LIST_FILE = "attempts.txt"
LIMIT_PATTERNS = (
    "maxsubmit",
    "job limit",
    "jobs limit",
    "limit exceeded",
    "too many jobs",
    "would exceed",
    "job_limit",
    "qosmax",
    "assocmax",
    "max_queued",
    "maximum number of jobs",
)

B = TypeVar("B", bound="BatchExecutor")


@dataclass
class RenderedJob:
    """A rendered job script and, for arrays, the listing of attempt directories."""

    script: str
    script_path: str
    list_path: str | None
    list_text: str | None
    array_err: str | None
    """Scheduler stderr path pattern of an array (with the scheduler's index token)."""


@dataclass
class _Attempt:
    """An attempt submitted (or re-attached) and not yet reported."""

    attempt_id: str
    workdir: Path
    native_id: str
    job_id: str
    submitted: float
    kind: TaskKind | None = None
    resources: Resources | None = None
    sched_err: Path | None = None
    cancelled: bool = False
    started: bool = False
    last_state: JobState | None = None
    terminal_since: float | None = None
    missing_since: float | None = None


class BatchExecutor(Executor):
    """Base of the SLURM, SGE, PBS and LSF executors; see the module docstring."""

    needs_shared_workdir: ClassVar[bool] = True
    settings_class: ClassVar[type[BatchSettings]] = BatchSettings
    name_limit: ClassVar[int] = 128
    """Longest job name the scheduler accepts."""
    submit_via_stdin: ClassVar[bool] = False
    """Whether the script is piped to the submit command (LSF reads directives only so)."""
    array_token: ClassVar[str] = "%a"
    """The scheduler's placeholder for the array index in output file names."""
    detached_arrays: ClassVar[bool] = False
    """Whether detached runs and exported scripts submit a scatter as one array job (its
    dependents wait for the whole array; see :meth:`dependency_id` for retries)."""
    elementwise_dependency: ClassVar[bool] = False
    """Whether an array can wait element by element for another array of its size (SLURM
    ``aftercorr``, Grid Engine ``-hold_jid_ad``): ``elementwise`` of :meth:`submit_argv`."""
    dependency_on_end: ClassVar[bool] = False
    """Whether the submit dependency releases a job when its parents *end*, failed or not
    (Grid Engine ``-hold_jid``); detached job scripts then check the parents' exit markers."""

    def __init__(
        self, settings: BatchSettings, ctx: ExecutorContext, transport: Transport | None = None
    ) -> None:
        self.settings = settings
        self.ctx = ctx
        self.transport: Transport = transport or LocalTransport()
        self._own_transport = transport is None
        self.staging = None if self.transport.shared_filesystem else RemoteStaging(
            self.transport, ctx.work_root, ctx.cwd, ctx.run_id, settings.remote_workdir,
            settings.remote_cleanup)
        """Attempt directories on the scheduler's side when the work directory is not shared."""
        self.reads_engine_files = self.transport.shared_filesystem
        self.stages_engine_files = not self.transport.shared_filesystem  # sent once per content
        self._fetching: list[Completion] = []
        self.submit_calls = 0
        """Number of submit commands run (one per single job or array job)."""
        self.query_calls = 0
        """Number of status query cycles run."""
        self._listener: Listener | None = None
        self._tracked: dict[str, _Attempt] = {}
        self._queue: deque[list[TaskSpec]] = deque()
        self._done: list[Completion] = []
        self._reported: set[str] = set()
        self._interval = settings.poll_interval
        self._next_query = 0.0
        self._next_scan = 0.0
        self._retry_after = 0.0
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_options(cls: type[B], options: dict[str, Any], ctx: ExecutorContext) -> B:
        """Validate profile options into the typed settings and build the executor.

        ``transport = "ssh://user@host"`` (with ``transport_options``) runs the scheduler
        commands on a login node over SSH. By default the work directory must be on a file
        system both sides see at the same path; with ``shared_filesystem = false`` in the
        transport options, attempt directories are staged under ``remote_workdir`` on the
        login node's side and fetched back (see :mod:`corral.executors.batch.staging`)."""
        opts = dict(options)
        url, transport_opts = opts.pop("transport", None), opts.pop("transport_options", None)
        settings = parse_settings(cls.settings_class, opts, cls.kind)
        transport = transport_from_profile(url, transport_opts)
        executor = cls(settings, ctx, transport)
        executor._own_transport = True
        return executor

    # ------------------------------------------------------------------ scheduler hooks
    @abstractmethod
    def directives(self, req: JobRequest) -> list[str]:
        """Directive lines (``#SBATCH ...``) of one job; ResourceError if not expressible."""

    @abstractmethod
    def submit_argv(self, script: str, depends_on: Sequence[str] = (),
                    elementwise: Sequence[str] = ()) -> list[str]:
        """The submit command for a script file, optionally after other jobs succeeded, and
        (an array, where :attr:`elementwise_dependency`) element ``i`` after element ``i`` of
        each array job of ``elementwise``."""

    @abstractmethod
    def parse_submit(self, stdout: str) -> str:
        """The job id printed by the submit command."""

    @abstractmethod
    def element_id(self, job_id: str, index: int) -> str:
        """The native id of element ``index`` (1-based) of array job ``job_id``."""

    @abstractmethod
    def job_of(self, native_id: str) -> str:
        """The job id (array job for an element) that status queries and cancels name."""

    def dependency_id(self, native_id: str) -> str:
        """The id a submit dependency names to wait for job or element ``native_id``: its
        whole array where the scheduler cannot wait for one element."""
        return self.job_of(native_id)

    @abstractmethod
    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        """One command cancelling every job or element in ``native_ids``."""

    @abstractmethod
    def query(self, native_ids: Sequence[str]) -> dict[str, JobStatus]:
        """One batched status query (plus accounting where needed) for the jobs of
        ``native_ids`` (use :meth:`job_of` for their job ids), keyed by native id."""

    def is_limit_error(self, err: CommandError) -> bool:
        """Whether a failed submission was refused for a job limit (then it is retried later)."""
        text = f"{err.stderr}\n{err.stdout}".lower()
        return any(p in text for p in LIMIT_PATTERNS)

    # ------------------------------------------------------------------ Executor API
    def start(self, listener: Listener) -> None:
        self._listener = listener

    def validate(self, resources: Resources) -> None:
        """Render this scheduler's directives for ``resources``; ResourceError if impossible."""
        self.directives(self._request("validate", resources, "/dev/null", "/dev/null"))

    def capacity(self) -> int | None:
        with self._lock:
            if self._queue:
                return 0
            if self.settings.max_jobs is None:
                return None
            return max(0, self.settings.max_jobs - len(self._tracked))

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        if self._listener is None:
            raise ExecutorError("the executor was not started; call start(listener) first")
        with self._lock:
            for spec in batch:
                self.write_payload(spec)
            self._queue.extend(self._units(batch))
            self._drain()

    def poll(self, timeout: float) -> list[Completion]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            with self._lock:
                self._cycle()
                if self._done:
                    done, self._done = self._done, []
                    return done
                pause = self._pause()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(remaining, pause))

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        with self._lock:
            wanted = set(attempt_ids)
            self._cancel_queued(wanted)
            natives = []
            for aid in wanted:
                attempt = self._tracked.get(aid)
                if attempt is not None and not attempt.cancelled:
                    attempt.cancelled = True
                    natives.append(attempt.native_id)
            if natives:
                self.cancel_jobs(natives)
                self._next_query = time.monotonic()
                self._interval = self.settings.poll_interval

    def cancel_native(self, refs: Sequence[AttemptRef]) -> None:
        natives = [r.native_id for r in refs if r.native_id]
        if natives:
            self.cancel_jobs(natives)

    def reattach(self, refs: Sequence[AttemptRef]) -> list[str]:
        with self._lock:
            taken: list[str] = []
            unknown: list[_Attempt] = []
            for ref in refs:
                if ref.attempt_id in self._tracked or not ref.native_id:
                    continue
                attempt = _Attempt(
                    ref.attempt_id,
                    Path(os.path.abspath(ref.workdir)),
                    ref.native_id,
                    self.job_of(ref.native_id),
                    ref.submitted or time.time(),
                )
                if self.transport.exists(self._r(attempt.workdir / MARKER_FILE)):
                    taken.append(self._retrack(attempt))
                else:
                    unknown.append(attempt)
            if unknown:
                self.query_calls += 1
                statuses = self.query([a.native_id for a in unknown])
                for attempt in unknown:
                    if attempt.native_id in statuses:
                        taken.append(self._retrack(attempt))
            self._next_scan = self._next_query = 0.0
            return taken

    def _retrack(self, attempt: _Attempt) -> str:
        self._tracked[attempt.attempt_id] = attempt
        if self.staging is not None:
            self.staging.track(attempt.attempt_id, attempt.workdir, None)
        return attempt.attempt_id

    def shutdown(self) -> None:
        with self._lock:
            if self._queue:
                log.warning("%s executor shut down with %d unsubmitted job(s)", self.kind,
                            sum(len(u) for u in self._queue))
            elif self.staging is not None and not self._tracked:
                self.staging.finish_run()
            if self._own_transport:
                self.transport.close()

    def describe(self) -> dict[str, Any]:
        settings = asdict(self.settings)
        settings["env"] = sorted(self.settings.env)  # names only: values may be secrets
        return {"kind": self.kind, "settings": settings}

    # ------------------------------------------------------------------ submission
    def write_payload(self, spec: TaskSpec) -> None:
        """Create the attempt directory and write ``payload.pkl`` (detached mode uses it too)."""
        workdir = self._r(spec.workdir)
        self.transport.makedirs(workdir)
        payload = self.launched(spec, workdir)
        if self.staging is not None:
            values = self.staging.stage_values(payload)  # upstream values passed by reference
            payload = staged_payload(payload, self.staging.cwd, self.staging.remote_cwd, values)
        self.transport.write_bytes(os.path.join(workdir, PAYLOAD_FILE), payload)
        if self.staging is not None:
            self.staging.stage(spec)

    def launched(self, spec: TaskSpec, workdir: str) -> bytes:
        """The payload of ``spec``, started by its launcher (``srun``, ``mpirun``) if any."""
        r = spec.resources
        if r.launcher is None and not r.parallel:
            return spec.payload
        name = effective_launcher(r, self.kind, self.settings.launcher)
        argv = launch_argv(r, name, self.settings.launcher_args)
        if not argv:
            return spec.payload
        return launched_payload(spec.kind is TaskKind.SHELL, spec.payload, argv, Path(workdir))

    def _r(self, local: str | Path) -> str:
        """Where a path under the local work directory is on the scheduler's side."""
        if self.staging is None:
            return os.path.abspath(local)
        return self.staging.remote(local)

    def _units(self, batch: Sequence[TaskSpec]) -> list[list[TaskSpec]]:
        """Specs sharing group, resources, environment and directory form one unit (an array
        if >= 2): one job script runs every element in the same directory."""
        units: dict[str, list[TaskSpec]] = {}
        for spec in batch:
            key = json.dumps(
                [spec.group, spec.resources.to_dict(), sorted(spec.env.items()), str(spec.cwd)],
                sort_keys=True,
                default=str,
            )
            units.setdefault(key, []).append(spec)
        return list(units.values())

    def _room(self) -> int:
        if self.settings.max_jobs is None:
            return 1 << 30
        return self.settings.max_jobs - len(self._tracked)

    def _drain(self) -> None:
        """Submit queued units while the job limit allows; keep them on limit refusals."""
        if time.monotonic() < self._retry_after:
            return
        while self._queue:
            room = self._room()
            if room <= 0:
                return
            unit = self._queue[0]
            take, rest = unit[:room], unit[room:]
            try:
                self._submit_unit(take)
            except CommandError as exc:
                if self.is_limit_error(exc):
                    log.info("%s refused a submission for a job limit; retrying in %gs: %s",
                             self.kind, self.settings.limit_backoff, exc)
                    self._retry_after = time.monotonic() + self.settings.limit_backoff
                    return
                self._fail_specs(take, f"submission failed: {exc}\n{tail(exc.stderr)}".strip())
            except CorralError as exc:
                self._fail_specs(take, f"submission failed: {exc}")
            self._queue.popleft()
            if rest:
                self._queue.appendleft(rest)

    def render_job(self, unit: Sequence[TaskSpec], after: Sequence[str] = ()) -> RenderedJob:
        """The job script (and array listing) for specs submitted together; no I/O.

        Two or more specs make one array job; ``corral export`` uses this to write scripts.
        ``after`` are the attempt directories of the jobs this one depends on (detached mode):
        where :attr:`dependency_on_end`, the script runs the worker only if their exit markers
        say ``succeeded``, and otherwise exits 1 without running the task.
        """
        first = unit[0]
        array = len(unit) >= 2
        if array:
            base = Path(os.path.abspath(self.ctx.work_root)) / "arrays"
            jobdir = base / f"{sanitize_name(first.group)}-{first.attempt_id}"
            out = str(jobdir / f"{SCHED_OUT}.{self.array_token}")
            err = str(jobdir / f"{SCHED_ERR}.{self.array_token}")
        else:
            jobdir = Path(os.path.abspath(first.workdir))
            out, err = str(jobdir / SCHED_OUT), str(jobdir / SCHED_ERR)
        req = self._request(first.group if array else first.name, first.resources,
                            self._r(out), self._r(err))
        if array:
            req.array_size = len(unit)
            req.throttle = min(self.settings.array_throttle, len(unit))
        body = self._body(unit)
        if self.dependency_on_end:
            body.require_succeeded = list(after)
        listing = None
        if array:
            dirs = [self._r(spec.workdir) for spec in unit]
            if any("\n" in d or "\r" in d for d in dirs):
                raise ExecutorError("attempt directories must not contain line breaks")
            body.list_file = self._r(jobdir / LIST_FILE)
            listing = "\n".join(dirs) + "\n"
        text = render(self.kind, self.directives(req), body, comment=first.attempt_id)
        return RenderedJob(text, self._r(jobdir / SCRIPT_FILE), body.list_file, listing,
                           err if array else None)

    def _submit_unit(self, unit: list[TaskSpec]) -> None:
        job = self.render_job(unit)
        if job.list_path and job.list_text is not None:
            self.transport.write_bytes(job.list_path, job.list_text.encode())
        self.transport.write_bytes(job.script_path, job.script.encode(), mode=0o755)
        self.submit_calls += 1
        result = self._run(
            self.submit_argv(job.script_path),
            input=job.script if self.submit_via_stdin else None,
            timeout=self.settings.submit_timeout,
        )
        job_id = self.parse_submit(result.stdout)
        self._track_unit(unit, job_id, job.array_err)

    def _request(self, name: str, resources: Resources, out: str, err: str) -> JobRequest:
        return JobRequest(
            name=job_name(self.ctx.run_id, name, self.name_limit),
            resources=resources,
            stdout=self._path_value(out),
            stderr=self._path_value(err),
            extra_args=[directive_arg("extra_args", a) for a in self.settings.extra_args]
            + [directive_arg(f"native[{self.kind!r}]", a)
               for a in resources.native.get(self.kind, ())],
        )

    def _path_value(self, path: str) -> str:
        directive_value("output path", path.replace(self.array_token, "0"))
        return path

    def _body(self, unit: Sequence[TaskSpec]) -> ScriptBody:
        s = self.settings
        return ScriptBody(
            cwd=self.staging.remote_cwd if self.staging else os.path.abspath(unit[0].cwd),
            python=s.python or self.ctx.python or _default_python(),
            attempt_dir=None if len(unit) >= 2 else self._r(unit[0].workdir),
            modules=s.modules,
            setup=s.setup,
            env={**s.env, **unit[0].env},
            container=s.container,
            container_runtime=s.container_runtime,
            binds=[self.staging.base if self.staging else os.path.abspath(self.ctx.work_root)],
        )

    def _track_unit(self, unit: list[TaskSpec], job_id: str, array_err: str | None) -> None:
        now = time.time()
        assert self._listener is not None
        for index, spec in enumerate(unit, start=1):
            native = self.element_id(job_id, index) if array_err else job_id
            workdir = Path(os.path.abspath(spec.workdir))
            sched_err = (
                Path(array_err.replace(self.array_token, str(index)))
                if array_err
                else workdir / SCHED_ERR
            )
            self._tracked[spec.attempt_id] = _Attempt(
                spec.attempt_id, workdir, native, job_id, now,
                kind=spec.kind, resources=spec.resources, sched_err=sched_err,
            )
            if self.staging is not None:
                self.staging.track(spec.attempt_id, workdir, spec.payload,
                                   self._r(sched_err.parent) if array_err else None, sched_err)
            self._listener.submitted(spec.attempt_id, native)
        now = time.monotonic()
        if self._next_query <= now:  # nothing was waiting for a query: wait one interval first
            self._next_query = now + self.settings.poll_interval
        else:
            self._next_query = min(self._next_query, now + self.settings.poll_interval)

    def _fail_specs(self, specs: Sequence[TaskSpec], error: str) -> None:
        for spec in specs:
            self._report(Completion(spec.attempt_id, Outcome.FAILED, Metrics(), None, error))

    def _cancel_queued(self, wanted: set[str]) -> None:
        kept: deque[list[TaskSpec]] = deque()
        for unit in self._queue:
            rest = [s for s in unit if s.attempt_id not in wanted]
            for spec in unit:
                if spec.attempt_id in wanted:
                    self._report(Completion(spec.attempt_id, Outcome.CANCELLED,
                                            error="cancelled before it was submitted"))
            if rest:
                kept.append(rest)
        self._queue = kept

    def cancel_jobs(self, native_ids: Sequence[str]) -> None:
        """One cancel command for these native ids; failures (already ended) are only logged."""
        result = self._run(self.cancel_argv(native_ids), check=False)
        if result.returncode != 0:
            log.info("%s cancel exited %d: %s", self.kind, result.returncode,
                     tail(result.stderr or result.stdout, 3))

    # ------------------------------------------------------------------ the poll-time check
    def _cycle(self) -> None:
        now = time.monotonic()
        if self._queue:
            self._drain()
        if now >= self._next_scan:
            self._next_scan = now + self.settings.marker_interval
            if self._scan_markers():
                self._interval = self.settings.poll_interval
                self._next_query = min(self._next_query, now + self._interval)
        if self._tracked and now >= self._next_query:
            self._status_cycle()
        if self._fetching:
            fetched, self._fetching = self._fetching, []
            assert self.staging is not None
            self.staging.fetch(fetched)
            for completion in fetched:
                self._report(completion)

    def _pause(self) -> float:
        now = time.monotonic()
        waits = [self._next_scan - now, self.settings.marker_interval]
        if self._tracked:
            waits.append(self._next_query - now)
        if self._queue:
            waits.append(self._retry_after - now)
        return max(0.01, min(waits))

    def _scan_markers(self) -> bool:
        """Report attempts whose exit marker exists; tell the listener about starts."""
        found = False
        for attempt in list(self._tracked.values()):
            marker = self._read_marker(attempt.workdir)
            if marker is not None:
                self._finish_from_marker(attempt, marker)
                found = True
            elif not attempt.started:
                self._check_started(attempt)
        return found

    def _read_marker(self, workdir: Path) -> dict[str, Any] | None:
        data = self.transport.read_bytes(self._r(workdir / MARKER_FILE))
        if data is None:
            return None
        try:
            marker = json.loads(data)
        except ValueError:
            return None
        return marker if isinstance(marker, dict) else None

    def _check_started(self, attempt: _Attempt) -> None:
        data = self.transport.read_bytes(self._r(attempt.workdir / STARTED_FILE))
        if data is None:
            return
        attempt.started = True
        try:
            info = json.loads(data)
            when, host = float(info.get("started", time.time())), info.get("host")
        except (ValueError, TypeError, AttributeError):
            when, host = time.time(), None
        if self._listener is not None:
            self._listener.started(attempt.attempt_id, when, host)

    def _finish_from_marker(self, attempt: _Attempt, marker: Mapping[str, Any]) -> None:
        try:
            outcome = Outcome(str(marker.get("outcome")))
        except ValueError:
            outcome = Outcome.FAILED
        raw = marker.get("metrics")
        metrics = Metrics.from_dict(raw if isinstance(raw, dict) else {})
        metrics.native_id, metrics.submitted = attempt.native_id, attempt.submitted
        # without a shared file system the result comes back with the attempt's other files
        result = self._result(attempt, marker) if self.staging is None else None
        error = marker.get("error")
        if outcome is not Outcome.SUCCEEDED and attempt.kind is TaskKind.SHELL:
            error = _join(error, self._log_tails(attempt, self._sched_log(attempt)))
        self._finish(attempt, Completion(attempt.attempt_id, outcome, metrics, result, error))

    def _result(self, attempt: _Attempt, marker: Mapping[str, Any]) -> bytes | None:
        """The attempt's pickled value; for a large value seen here at the same path (a shared
        file system), a :class:`StoredResult` naming its file: the engine moves the file into
        its store and never reads it."""
        local = attempt.workdir / RESULT_FILE
        if "value" in marker and local.is_file():
            return stored_result(local, marker)
        return self.transport.read_bytes(self._r(local))

    def _finish(self, attempt: _Attempt, completion: Completion) -> None:
        self._tracked.pop(attempt.attempt_id, None)
        if self.staging is not None:  # reported once its files are back (end of the cycle)
            self._fetching.append(completion)
        else:
            self._report(completion)

    def _report(self, completion: Completion) -> None:
        if completion.attempt_id in self._reported:
            return
        self._reported.add(completion.attempt_id)
        self._done.append(completion)

    def _status_cycle(self) -> None:
        attempts = list(self._tracked.values())
        self.query_calls += 1
        try:
            statuses = self.query([a.native_id for a in attempts])
        except CommandError as exc:
            log.warning("%s status query failed (will retry): %s", self.kind, exc)
            statuses = None
        changed = False
        if statuses is not None:
            for attempt in attempts:
                if attempt.attempt_id in self._tracked:
                    changed |= self._classify(attempt, statuses.get(attempt.native_id))
        waiting = any(a.terminal_since or a.missing_since for a in self._tracked.values())
        if changed or waiting:
            self._interval = self.settings.poll_interval
        else:
            self._interval = min(self._interval * 1.5, self.settings.max_poll_interval)
        self._next_query = time.monotonic() + self._interval

    def _classify(self, attempt: _Attempt, status: JobStatus | None) -> bool:
        """Act on one attempt's scheduler status; returns whether its state changed."""
        now = time.monotonic()
        changed = (status.state if status else None) != attempt.last_state
        attempt.last_state = status.state if status else None
        if status is None:
            attempt.missing_since = attempt.missing_since or now
            if attempt.cancelled or now - attempt.missing_since >= self.settings.lost_grace:
                self._end_without_marker(attempt, None)
            return changed
        attempt.missing_since = None
        if status.state is JobState.ERROR_HELD:
            self.cancel_jobs([attempt.native_id])
            self._end_without_marker(attempt, status)
        elif not status.state.terminal:
            attempt.terminal_since = None
            if status.state is JobState.RUNNING and not attempt.started:
                self._check_started(attempt)
        else:
            attempt.terminal_since = attempt.terminal_since or now
            grace = (
                self.settings.lost_grace
                if status.state is JobState.COMPLETED and not attempt.cancelled
                else self.settings.kill_grace
            )
            if now - attempt.terminal_since >= grace:
                self._end_without_marker(attempt, status)
        return changed

    def _end_without_marker(self, attempt: _Attempt, status: JobStatus | None) -> None:
        marker = self._read_marker(attempt.workdir)
        if marker is not None:
            self._finish_from_marker(attempt, marker)
            return
        if attempt.cancelled:
            outcome = Outcome.CANCELLED
        elif status is None:
            outcome = Outcome.LOST
        else:
            outcome = OUTCOME_OF_STATE[status.state]
        sched_log = self._sched_log(attempt)
        if outcome is Outcome.FAILED and killed_for_memory(sched_log):
            outcome = Outcome.OUT_OF_MEMORY  # e.g. SLURM without cgroups: FAILED, 137
        metrics = Metrics(submitted=attempt.submitted, native_id=attempt.native_id)
        if status is not None:
            metrics.exit_code, metrics.started, metrics.ended = (
                status.exit_code, status.started, status.ended)
            metrics.peak_rss, metrics.host = status.max_rss, status.host
        error = _join(self._reason(attempt, status, outcome), self._log_tails(attempt, sched_log))
        self._finish(attempt, Completion(attempt.attempt_id, outcome, metrics, None, error))

    def _reason(self, attempt: _Attempt, status: JobStatus | None, outcome: Outcome) -> str:
        who = f"{self.kind} job {attempt.native_id}"
        if status is None:
            if attempt.cancelled:
                return f"{who} was cancelled"
            return (f"{who} vanished from the scheduler without an exit marker "
                    f"(waited {self.settings.lost_grace:g}s)")
        text = f"{who} ended {status.state.name}"
        if status.exit_code is not None:
            text += f" (exit code {status.exit_code})"
        if status.reason:
            text += f": {status.reason}"
        res = attempt.resources
        if outcome is Outcome.OUT_OF_MEMORY and res is not None and res.memory_bytes:
            peak = f", peak {format_memory(status.max_rss)}" if status.max_rss else ""
            return f"{who} asked for memory={format_memory(res.memory_bytes)}{peak}; {text}"
        if outcome is Outcome.TIMEOUT and res is not None and res.walltime_seconds:
            return f"{who} asked for walltime={format_walltime(res.walltime_seconds)}; {text}"
        if outcome is Outcome.LOST:
            text += (f" but left no exit marker after {self.settings.lost_grace:g}s "
                     "(the worker did not start, or the shared file system is slow)")
        elif status.state is JobState.ERROR_HELD:
            text += "; the job was deleted"
        return text

    def _sched_log(self, attempt: _Attempt) -> str | None:
        """The tail of the scheduler's error file of the job (not the task's stderr)."""
        if attempt.sched_err is None:
            return None
        data = self.transport.read_bytes(self._r(attempt.sched_err))
        return data[-8192:].decode(errors="replace") if data else None

    def _log_tails(self, attempt: _Attempt, sched_log: str | None) -> str:
        """The last lines of the task's stderr and of ``sched_log`` (from :meth:`_sched_log`,
        read once by the caller, which also looks into it)."""
        data = self.transport.read_bytes(self._r(attempt.workdir / STDERR_FILE))
        logs = [(STDERR_FILE, data.decode(errors="replace") if data else None)]
        if attempt.sched_err is not None:
            logs.append((attempt.sched_err.name, sched_log))
        parts = [f"--- {name} (last lines) ---\n{text}"
                 for name, text in ((n, tail(t)) for n, t in logs) if text]
        return "\n".join(parts)

    def _run(
        self, argv: Sequence[str], *, input: str | None = None, timeout: float = 60.0,
        check: bool = True,
    ) -> CommandResult:
        return self.transport.run(argv, input=input, timeout=timeout, check=check)


def _join(*parts: str | None) -> str | None:
    text = "\n".join(p for p in parts if p)
    return text or None


def _default_python() -> str:
    import sys

    return sys.executable


__all__ = ["BatchExecutor", "BatchSettings", "JobRequest", "JobState", "JobStatus"]
