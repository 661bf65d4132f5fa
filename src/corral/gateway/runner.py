"""The runner: one background thread that hands queued jobs to Corral's executors and follows them.

Each HPC system (:mod:`.systems`) gets one executor of its kind (``slurm``, ``sge``, ``ssh`` ...,
built by :func:`corral.executors.create_executor` from its profile), shared by all its jobs; the
``local`` system's command jobs run as detached processes that outlive the gateway
(:mod:`.detached`). A job
is one shell attempt whose command is ``shlex.join(shlex.split(command))``: every word is quoted,
so the shell that runs it expands nothing and no ``;`` or ``$(...)`` of a user's command does
anything; its title reaches the scheduler only through the executor's sanitised job name. The
attempt's files (``payload.pkl``, the job script, ``stdout.log``, ``stderr.log``, the exit marker)
are in ``<jobs_dir>/<job id>/.corral/``, and the job runs in ``<jobs_dir>/<job id>/``.

Each round, the runner polls every executor once (a batch executor runs at most one batched status
query per interval for all of its jobs: no scheduler call per job, and none per API request), ends
the jobs that completed (charging what they ran), passes on cancels, and submits queued jobs while
the executor has room. At start it re-attaches to the jobs a previous gateway left running (a
batch executor finds them by native id and exit marker, the local system by process id and exit
marker); a job no executor can take back (its process gone without a marker, or an executor that
cannot re-attach) is recorded as ``system_error``, charged up to then.
"""

from __future__ import annotations

import logging
import math
import pickle
import shlex
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.errors import CorralError
from corral.executors import create_executor
from corral.executors.base import AttemptRef, Completion, Executor, ExecutorContext, Outcome, TaskKind, TaskSpec
from corral.resources import Resources
from corral.worker.execute import STDERR_FILE, STDOUT_FILE, ShellPayload

from .detached import DetachedLocal, recorded_pid
from .settings import ATTEMPT_DIR, Settings
from .store import GatewayStore, JobState
from .systems import BACKEND_KEYS, HpcSystem

log = logging.getLogger(__name__)

STATE_OF_OUTCOME = {
    Outcome.SUCCEEDED: JobState.COMPLETED, Outcome.FAILED: JobState.FAILED,
    Outcome.OUT_OF_MEMORY: JobState.FAILED, Outcome.TIMEOUT: JobState.TIMEOUT,
    Outcome.NODE_FAILURE: JobState.SYSTEM_ERROR, Outcome.PREEMPTED: JobState.SYSTEM_ERROR,
    Outcome.CANCELLED: JobState.CANCELLED, Outcome.LOST: JobState.SYSTEM_ERROR,
}


def job_dir(settings: Settings, job_id: str) -> Path:
    """Where a job runs and leaves its result files."""
    return settings.jobs_dir / job_id


def log_file(settings: Settings, job_id: str, stream: str) -> Path:
    """A job's standard output (``stream`` ``stdout``) or error (``stderr``)."""
    return job_dir(settings, job_id) / ATTEMPT_DIR / (STDOUT_FILE if stream == "stdout" else STDERR_FILE)


def quoted(command: str) -> str:
    """The shell line of a command: its words (:func:`shlex.split`) each quoted, so a shell runs
    exactly that argument list. ValueError for an empty or unbalanced command."""
    argv = shlex.split(command)
    if not argv:
        raise ValueError("empty command")
    return shlex.join(argv)


def job_resources(job: Mapping[str, Any], kind: str) -> Resources:
    """The executor's resources of a command job on a system of ``kind``: nodes, cores, walltime,
    queue, memory per node and the backend parameters (vetted at submission) as their fields."""
    fields = BACKEND_KEYS.get(kind, {})
    backend = {fields[key]: value for key, value in (job.get("backend_parameters") or {}).items() if key in fields}
    memory = job.get("memory_gb")
    return Resources(cores=int(job["cores_per_node"]), nodes=int(job["nodes"]),
                     walltime=max(1, round(float(job["walltime_hours"]) * 3600)), queue=job["queue"],
                     memory=None if memory is None else math.ceil(float(memory) * 1024**3), **backend)


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


class _Listener:
    """What an executor reports while jobs are in flight, written to the store at once."""

    def __init__(self, store: GatewayStore) -> None:
        self.store = store

    def submitted(self, attempt_id: str, native_id: str) -> None:
        self.store.set_native_id(attempt_id, native_id)

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        self.store.mark_running(attempt_id, _utc(when) or datetime.now(UTC).replace(tzinfo=None))


class JobRunner:
    """Runs the gateway's jobs on its HPC systems through Corral's executors (see the module)."""

    def __init__(self, store: GatewayStore, settings: Settings, systems: Mapping[str, HpcSystem]) -> None:
        self.store, self.settings, self.systems = store, settings, dict(systems)
        self._executors: dict[str, Executor] = {}
        self._tracked: dict[str, str] = {}
        """Job id -> system, for the jobs handed to an executor and not reported yet."""
        self._cancelled: set[str] = set()
        from .pipelines import PipelineRuns

        self.pipelines = PipelineRuns(store, settings.pipelines_dir)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Re-attach to the jobs of a previous gateway, then run rounds in a background thread."""
        self.reattach()
        self._thread = threading.Thread(target=self._loop, name="corral-gateway-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and the executors; jobs keep running, on clusters and as detached
        local processes alike (the next start follows them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for executor in self._executors.values():
            executor.shutdown()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # one bad round must not end the runner
                log.exception("gateway runner")
            self._stop.wait(self.settings.poll_seconds)

    def step(self) -> None:
        """One round: poll each executor once, pass on cancels, submit queued jobs."""
        for name in list(self._executors):
            for done in self._executors[name].poll(0):
                self._end(done)
        self.pipelines.poll()
        self._pass_cancels()
        self._submit_queued()

    # ------------------------------------------------------------------ executors
    def executor(self, name: str) -> Executor:
        """The executor of system ``name``, built and started on first use."""
        if name not in self._executors:
            system = self.systems[name]
            ctx = ExecutorContext(run_id=f"gw-{name}", work_root=self.settings.jobs_dir,
                                  cwd=self.settings.jobs_dir, max_parallel=self.settings.max_running)
            executor: Executor = (DetachedLocal(ctx) if system.kind == "local"
                                  else create_executor(system.kind, dict(system.options), ctx))
            executor.start(_Listener(self.store))
            self._executors[name] = executor
        return self._executors[name]

    def _spec(self, job: dict[str, Any], run_id: str) -> TaskSpec:
        jobdir = job_dir(self.settings, job["id"])
        (jobdir / ATTEMPT_DIR).mkdir(parents=True, exist_ok=True)
        resources = job_resources(job, self.systems[job["system"]].kind)
        payload = pickle.dumps(ShellPayload(quoted(job["command"])))
        return TaskSpec(attempt_id=job["id"], run_id=run_id, task_key=job["id"].replace("-", ""),
                        name=job["title"] or "job", group=job["id"], kind=TaskKind.SHELL, payload=payload,
                        resources=resources, attempt=1, workdir=jobdir / ATTEMPT_DIR, cwd=jobdir)

    def _submit_queued(self) -> None:
        room = self.settings.max_running - len(self._tracked) - len(self.pipelines.handles)
        if room <= 0:
            return
        for job in self.store.claim(sorted(self.systems), room):
            try:
                if job["pipeline"] is not None:
                    self.pipelines.start(job, self.systems[job["system"]], job_dir(self.settings, job["id"]))
                    continue
                executor = self.executor(job["system"])
                spec = self._spec(job, f"gw-{job['system']}")
                executor.validate(spec.resources)
                executor.submit([spec])
            except (CorralError, ValueError, OSError) as exc:
                log.warning("job %s could not be submitted: %s", job["id"], exc)
                self._write_stderr(job["id"], f"cannot submit: {exc}\n")
                self.store.finish(job["id"], JobState.FAILED, 127, note=f"cannot submit: {exc}")
                continue
            self._tracked[job["id"]] = job["system"]

    def _write_stderr(self, job_id: str, text: str) -> None:
        path = log_file(self.settings, job_id, "stderr")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(text)

    def _pass_cancels(self) -> None:
        wanted: dict[str, list[str]] = {}
        for job in self.store.followed():
            if job["state"] != JobState.CANCELLING or job["id"] in self._cancelled:
                continue
            if job["id"] in self._tracked:
                wanted.setdefault(self._tracked[job["id"]], []).append(job["id"])
            elif self.pipelines.cancel(job["id"]):
                self._cancelled.add(job["id"])
        for name, ids in wanted.items():
            self._executors[name].cancel(ids)
            self._cancelled.update(ids)

    def _end(self, done: Completion) -> None:
        self._tracked.pop(done.attempt_id, None)
        self._cancelled.discard(done.attempt_id)
        state = STATE_OF_OUTCOME[done.outcome]
        if state is JobState.FAILED and done.metrics.exit_code is None and done.error:
            self._write_stderr(done.attempt_id, done.error)
        m = done.metrics
        self.store.finish(done.attempt_id, state, m.exit_code, started=_utc(m.started), ended=_utc(m.ended),
                          note=f"{done.outcome}" + (f": {done.error[:200]}" if done.error else ""))

    # ------------------------------------------------------------------ restart
    def reattach(self) -> None:
        """Follow the jobs a previous gateway left: those its executor takes back are tracked
        again; a submission that may not have happened is queued again; the rest are lost."""
        by_system: dict[str, list[AttemptRef]] = {}
        for job in self.store.followed():
            attempt_dir = job_dir(self.settings, job["id"]) / ATTEMPT_DIR
            if job["native_id"] is None:
                job["native_id"] = self._started_unrecorded(job, attempt_dir)
            if job["system"] not in self.systems:
                self.store.finish(job["id"], JobState.SYSTEM_ERROR, None,
                                  note=f"HPC system {job['system']!r} is no longer configured")
            elif job["native_id"] is None and job["state"] == JobState.INITIALIZING:
                self.store.requeue(job["id"], "the gateway stopped before it was submitted")
            elif job["pipeline"] and job["state"] != JobState.CANCELLING:
                self.store.requeue(job["id"], "the gateway stopped while its run went on: it resumes")
            else:
                ref = AttemptRef(job["id"], job["native_id"] or "", attempt_dir,
                                 job["submitted"].replace(tzinfo=UTC).timestamp())
                by_system.setdefault(job["system"], []).append(ref)
        for name, refs in by_system.items():
            taken = set(self._take_back(name, refs))
            for ref in refs:
                if ref.attempt_id in taken:
                    self._tracked[ref.attempt_id] = name
                else:
                    log.warning("job %s of the previous gateway cannot be followed: system_error", ref.attempt_id)
                    self.store.finish(ref.attempt_id, JobState.SYSTEM_ERROR, None,
                                      note="running when the gateway stopped; its executor cannot follow it")

    def _started_unrecorded(self, job: Mapping[str, Any], attempt_dir: Path) -> str | None:
        """The process id of a local job the previous gateway started but stopped before it stored
        the id (its ``detached.json`` is written), now stored; None for any other job."""
        system = self.systems.get(job["system"])
        pid = recorded_pid(attempt_dir) if system is not None and system.kind == "local" else None
        if pid is not None:
            self.store.set_native_id(job["id"], pid)
        return pid

    def _take_back(self, name: str, refs: Sequence[AttemptRef]) -> list[str]:
        try:
            return self.executor(name).reattach(refs)
        except CorralError as exc:
            log.warning("cannot re-attach to the jobs of %s: %s", name, exc)
            return []
