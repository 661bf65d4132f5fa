"""The local runner: a background thread that runs queued jobs as processes on this machine.

A job's command is split with :func:`shlex.split` and run as an argument list: never through a
shell. Its standard output and error go to ``<workdir>/.corral/gateway-jobs/<job id>/``. When it
ends, the store charges its actual runtime and releases the rest of its reservation; a job
cancelled while running is terminated (SIGTERM, then SIGKILL), and one that outlives its walltime
is killed and recorded as failed. Jobs that were running when the gateway stopped are recorded as
``system_error`` at the next start (following them across restarts is not built yet).
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

from .settings import Settings
from .store import GatewayStore, JobState

log = logging.getLogger(__name__)


@dataclass
class _Running:
    job_id: str
    proc: subprocess.Popen[bytes]
    deadline: float
    cancelling: bool = False


class LocalRunner:
    def __init__(self, store: GatewayStore, settings: Settings) -> None:
        self.store, self.settings = store, settings
        self._running: dict[str, _Running] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for job_id in self.store.orphaned():
            log.warning("job %s was running when the gateway stopped: recorded as system_error", job_id)
            self.store.finish(job_id, JobState.SYSTEM_ERROR, None)
        self._thread = threading.Thread(target=self._loop, name="corral-gateway-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for run in list(self._running.values()):
            self._terminate(run.proc)
            self.store.finish(run.job_id, JobState.SYSTEM_ERROR, None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # one bad round must not end the runner
                log.exception("gateway runner")
            self._stop.wait(self.settings.poll_seconds)

    def step(self) -> None:
        """One round: follow the running jobs, then start queued ones while there is room."""
        for run in list(self._running.values()):
            self._follow(run)
        while len(self._running) < self.settings.max_running:
            job = self.store.claim_next()
            if job is None:
                return
            self._launch(job["id"], job["command"], float(job["walltime_hours"]))

    def _launch(self, job_id: str, command: str, walltime_hours: float) -> None:
        jobdir = self.settings.jobs_dir / job_id
        jobdir.mkdir(parents=True, exist_ok=True)
        try:
            argv = shlex.split(command)
            if not argv:
                raise ValueError("empty command")
            with open(jobdir / "stdout", "wb") as out, open(jobdir / "stderr", "wb") as err:
                proc = subprocess.Popen(  # noqa: S603 - an argument list, no shell
                    argv, cwd=jobdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        except (OSError, ValueError) as exc:
            (jobdir / "stderr").write_text(f"cannot start {command!r}: {exc}\n")
            self.store.finish(job_id, JobState.FAILED, 127)
            return
        self.store.set_native_id(job_id, str(proc.pid))
        self._running[job_id] = _Running(job_id, proc, time.monotonic() + walltime_hours * 3600.0)

    def _follow(self, run: _Running) -> None:
        code = run.proc.poll()
        if code is None:
            if not run.cancelling and self.store.job_state(run.job_id) == JobState.CANCELLING:
                run.cancelling = True
                self._terminate(run.proc)
            elif time.monotonic() > run.deadline:
                self._terminate(run.proc)
            return
        del self._running[run.job_id]
        if run.cancelling:
            state = JobState.CANCELLED
        else:
            state = JobState.COMPLETED if code == 0 else JobState.FAILED
        self.store.finish(run.job_id, state, code)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
