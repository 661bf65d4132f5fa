"""Command jobs of the ``local`` system as processes that outlive the gateway.

Each job is ``python -m corral.worker <attempt dir> --cwd <job dir>`` in a session of its own
(``start_new_session``: a gateway stopped, or killed with SIGKILL, takes none of them along). The
worker runs the quoted command, writes ``started.json`` when it begins and the exit marker
(``exit.json``: outcome, metrics, exit code) when it ends, as on a cluster node. Beside them this
module writes ``detached.json``: the process id, its start time (so a reused pid is not taken
for it) and its walltime, counted from the start the worker records. The job's native id is its process id.

The gateway follows the jobs by these files: a marker is the job's end; a process gone without
one was killed (``cancelled`` if the gateway cancelled it, ``timeout`` past its walltime,
otherwise lost: ``system_error``). Past its walltime a job's session gets SIGTERM (the worker
ends the command's processes), then SIGKILL after :data:`KILL_GRACE` seconds. After a restart,
:meth:`DetachedLocal.reattach` takes back every job whose process is alive or whose marker is
written. Memory requests are not enforced on the local system.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from corral.executors.base import (
    AttemptRef,
    Completion,
    Executor,
    ExecutorContext,
    Listener,
    Metrics,
    Outcome,
    TaskSpec,
)
from corral.worker.execute import PAYLOAD_FILE, STARTED_FILE, atomic_write, read_marker

PROCESS_FILE = "detached.json"
"""The process of a detached job: ``{"pid", "created", "walltime"}``, in its attempt directory."""
WORKER_LOG = "worker.log"
"""What the worker itself printed (not the command's output: that is ``stdout.log``)."""
KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL when a job is cancelled or past its walltime."""


@dataclass
class _Job:
    attempt_id: str
    workdir: Path
    pid: int
    created: float
    walltime: float | None
    """Seconds the command may run, counted from its start (``started.json``; until the worker
    writes it, from the process's creation)."""
    proc: subprocess.Popen[bytes] | None = None
    """Set for a process this gateway started (it reaps it); None for one taken back."""
    started_at: float | None = None
    """When the command started (reported once known)."""
    stop: Outcome | None = None
    """Why the gateway stopped it (cancelled, timeout), if it did."""
    stop_sent: float | None = None


def _alive(pid: int, created: float) -> bool:
    """Whether process ``pid`` runs and is the one started at ``created`` (not a reused pid)."""
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - created) < 1.0
    except psutil.Error:
        return False


def _signal(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def recorded_pid(workdir: Path) -> str | None:
    """The process id ``detached.json`` of attempt directory ``workdir`` records, if any (a job
    started by a gateway that stopped before it stored the native id)."""
    try:
        return str(int(json.loads((workdir / PROCESS_FILE).read_bytes())["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DetachedLocal(Executor):
    """Runs shell attempts as detached worker processes on this machine (see the module)."""

    kind = "local-detached"

    def __init__(self, ctx: ExecutorContext) -> None:
        self.ctx = ctx
        self._jobs: dict[str, _Job] = {}
        self._listener: Listener | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], ctx: ExecutorContext) -> DetachedLocal:
        return cls(ctx)

    def start(self, listener: Listener) -> None:
        self._listener = listener

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        for spec in batch:
            workdir = Path(spec.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
            atomic_write(workdir / PAYLOAD_FILE, spec.payload)
            argv = [sys.executable, "-m", "corral.worker", str(workdir), "--cwd", str(spec.cwd or workdir)]
            with open(workdir / WORKER_LOG, "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,  # noqa: S603
                                        start_new_session=True, close_fds=True)
            created = psutil.Process(proc.pid).create_time()
            walltime = spec.resources.walltime_seconds
            atomic_write(workdir / PROCESS_FILE,
                         json.dumps({"pid": proc.pid, "created": created, "walltime": walltime}).encode())
            self._jobs[spec.attempt_id] = _Job(spec.attempt_id, workdir, proc.pid, created, walltime, proc)
            if self._listener is not None:
                self._listener.submitted(spec.attempt_id, str(proc.pid))

    def poll(self, timeout: float) -> list[Completion]:
        done = []
        for job in list(self._jobs.values()):
            ended = self._check(job)
            if ended is not None:
                del self._jobs[job.attempt_id]
                done.append(ended)
        return done

    def _check(self, job: _Job) -> Completion | None:
        """The job's completion if it has ended; otherwise report its start and enforce its walltime."""
        running = job.proc.poll() is None if job.proc is not None else _alive(job.pid, job.created)
        marker = read_marker(job.workdir)
        if job.started_at is None:
            self._report_start(job)  # also for a job that ended between two rounds: it ran
        if marker is not None:
            metrics = Metrics.from_dict(dict(marker.get("metrics") or {}))
            try:
                outcome = Outcome(str(marker.get("outcome")))
            except ValueError:
                outcome = Outcome.FAILED
            stopped = self._stopped_by_us(job, metrics)
            if outcome is not Outcome.SUCCEEDED and stopped is not None:
                # the worker wrote its marker when our SIGTERM ended the command: it ended
                # because we stopped it (cancel, walltime), not because the command failed
                return Completion(job.attempt_id, stopped, metrics, None, _why(stopped))
            return Completion(job.attempt_id, outcome, metrics, None, marker.get("error"))
        if not running:
            return self._markerless(job)
        now = time.time()
        deadline = self._deadline(job)
        if job.stop is None and deadline is not None and now > deadline:
            self._stop(job, Outcome.TIMEOUT)
        elif job.stop_sent is not None and now > job.stop_sent + KILL_GRACE:
            _signal(job.pid, signal.SIGKILL)
        return None

    def _markerless(self, job: _Job) -> Completion:
        started = self._started_at(job)
        metrics = Metrics(started=started, ended=time.time(), native_id=str(job.pid))
        if job.stop is not None:
            return Completion(job.attempt_id, job.stop, metrics, None, _why(job.stop))
        return Completion(job.attempt_id, Outcome.LOST, metrics, None,
                          f"process {job.pid} ended without an exit marker (killed outside the gateway?); "
                          f"see {job.workdir / WORKER_LOG}")

    @staticmethod
    def _stopped_by_us(job: _Job, metrics: Metrics) -> Outcome | None:
        """Why the gateway stopped the job, if it did: in this process (cancel, walltime), or
        a job taken back after a restart whose marker was written past its walltime."""
        if job.stop is not None:
            return job.stop
        deadline = DetachedLocal._deadline(job)
        if deadline is not None and metrics.ended is not None and metrics.ended > deadline:
            return Outcome.TIMEOUT
        return None

    @staticmethod
    def _deadline(job: _Job) -> float | None:
        """When the job's walltime ends: its command's start plus the walltime (the start as
        the worker recorded it, the process's creation until then)."""
        if job.walltime is None:
            return None
        return (job.started_at or job.created) + job.walltime

    @staticmethod
    def _started_at(job: _Job) -> float | None:
        try:
            value = json.loads((job.workdir / STARTED_FILE).read_bytes()).get("started")
        except (OSError, ValueError):
            return None
        return float(value) if isinstance(value, int | float) else None

    def _report_start(self, job: _Job) -> None:
        started = self._started_at(job)
        if started is not None:
            job.started_at = started
            if self._listener is not None:
                self._listener.started(job.attempt_id, started, None)

    def _stop(self, job: _Job, why: Outcome) -> None:
        job.stop, job.stop_sent = why, time.time()
        _signal(job.pid, signal.SIGTERM)

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        for attempt_id in attempt_ids:
            job = self._jobs.get(attempt_id)
            if job is not None and job.stop is None:
                self._stop(job, Outcome.CANCELLED)

    def reattach(self, refs: Sequence[AttemptRef]) -> list[str]:
        """Take back the jobs of a previous gateway whose process runs or whose marker is written."""
        taken = []
        for ref in refs:
            workdir = Path(ref.workdir)
            try:
                data = json.loads((workdir / PROCESS_FILE).read_bytes())
                pid, created = int(data["pid"]), float(data["created"])
                walltime = None if data.get("walltime") is None else float(data["walltime"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if str(pid) != ref.native_id:
                continue
            if read_marker(workdir) is None and not _alive(pid, created):
                continue
            self._jobs[ref.attempt_id] = _Job(ref.attempt_id, workdir, pid, created, walltime)
            taken.append(ref.attempt_id)
        return taken

    def shutdown(self) -> None:
        """Nothing stops: the jobs run on, and the next gateway takes them back."""
        self._jobs.clear()


def _why(stopped: Outcome) -> str:
    return "cancelled" if stopped is Outcome.CANCELLED else "killed at the end of its walltime"
