"""Pipeline jobs: a Corral pipeline (a file of the gateway's pipelines directory, a pipeline name
and parameters) run by the gateway through :func:`corral.api.start` on the job's HPC system (the
system's executor kind and options), with its run store in the job's directory.

The file must be inside ``<workdir>/pipelines/`` (admins install the pipelines users may run: a
pipeline file is Python the gateway imports). The job's native id is ``run:<run id>``; its tasks
and their states come from the run's store. The engine runs in a thread of the gateway: after a
restart the job is queued again, and starting it again resumes its run (finished tasks come from
the cache). The reservation is nodes x cores x walltime as for a command job; the charge is what
its tasks used on the cluster: the sum over the run's attempts (:meth:`corral.api.RunHandle.attempts`)
of each one's cores (nodes x cores, or ranks x cores per rank) x its wall time, at most the
reservation. The job's walltime ends it: past it the run is cancelled (its cluster jobs with it)
and the job ends ``timeout``; the walltime counts from the job's first start, across restarts.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.api import RunHandle, attach, start
from corral.errors import CorralError
from corral.loading import load_pipeline
from corral.resources import Resources
from corral.states import TERMINAL_RUN_STATES, RunState

from .files import resolve
from .store import GatewayError, GatewayStore, JobState, NotFound
from .systems import HpcSystem

log = logging.getLogger(__name__)

RUN_PREFIX = "run:"
STATE_OF_RUN = {RunState.SUCCEEDED: JobState.COMPLETED, RunState.FAILED: JobState.FAILED,
                RunState.CANCELLED: JobState.CANCELLED, RunState.INTERRUPTED: JobState.SYSTEM_ERROR}


def attempt_cores(resources: Mapping[str, Any] | None) -> int:
    """The cores an attempt held: ranks x cores per rank for a parallel task, else nodes x cores."""
    try:
        r = Resources.from_dict(resources or {})
    except (CorralError, TypeError, ValueError):
        return 1
    return r.total_cores if r.parallel else r.nodes * r.cores


def used_core_hours(attempts: Iterable[Mapping[str, Any]]) -> float:
    """What a run's attempts used: the sum of their cores x wall seconds (measured, else from
    start to end; an attempt that never started used nothing), in hours."""
    seconds = 0.0
    for a in attempts:
        wall = a.get("wall")
        if wall is None and a.get("started_at") is not None and a.get("ended_at") is not None:
            wall = max(0.0, float(a["ended_at"]) - float(a["started_at"]))
        seconds += attempt_cores(a.get("resources")) * float(wall or 0.0)
    return seconds / 3600.0


def pipeline_path(pipelines_dir: Path, file: str) -> Path:
    """The pipeline file ``file`` names inside ``pipelines_dir``; a 400 naming why not."""
    try:
        return resolve(pipelines_dir, file)
    except NotFound as exc:
        raise GatewayError(f"pipeline {exc}; pipelines are files of the gateway's {pipelines_dir}") from None


class PipelineRuns:
    """The pipeline jobs this gateway's engines run."""

    def __init__(self, store: GatewayStore, pipelines_dir: Path) -> None:
        self.store, self.pipelines_dir = store, pipelines_dir
        self.handles: dict[str, RunHandle] = {}
        self.deadlines: dict[str, float] = {}
        """Job id -> the time (epoch seconds) its walltime ends."""
        self.timed_out: set[str] = set()

    def start(self, job: dict[str, Any], system: HpcSystem, jobdir: Path) -> None:
        """Start (or resume) the job's run in a background thread of this process."""
        spec = job["pipeline"]
        path = pipeline_path(self.pipelines_dir, spec["file"])
        jobdir.mkdir(parents=True, exist_ok=True)
        pipe = load_pipeline(path, spec["name"])
        handle = start(pipe, spec["params"], executor=system.kind, executor_options=dict(system.options),
                       workdir=jobdir, source=str(path), owner=job["owner"], project=job["project_name"])
        self.handles[job["id"]] = handle
        self.store.set_native_id(job["id"], RUN_PREFIX + handle.run_id)
        begun = datetime.now(UTC) if job["started"] is None else datetime.fromisoformat(job["started"])
        self.store.mark_running(job["id"], begun.astimezone(UTC).replace(tzinfo=None))
        self.deadlines[job["id"]] = begun.timestamp() + float(job["walltime_hours"]) * 3600.0

    def poll(self) -> None:
        """End the jobs whose runs have ended, charging their tasks' use; cancel the runs of
        the jobs past their walltime."""
        for job_id, handle in list(self.handles.items()):
            state = handle.state
            if state in TERMINAL_RUN_STATES or state is RunState.INTERRUPTED:
                del self.handles[job_id]
                self.deadlines.pop(job_id, None)
                ended = STATE_OF_RUN.get(state, JobState.FAILED)
                note = f"run {handle.run_id} {state}"
                if job_id in self.timed_out:
                    self.timed_out.discard(job_id)
                    ended, note = JobState.TIMEOUT, f"{note}: past its walltime"
                self.store.finish(job_id, ended, 0 if ended is JobState.COMPLETED else None, note=note,
                                  used_core_hours=used_core_hours(handle.attempts()))
            elif time.time() > self.deadlines.get(job_id, float("inf")) and job_id not in self.timed_out:
                log.info("pipeline job %s is past its walltime: its run is cancelled", job_id)
                self.timed_out.add(job_id)
                handle.cancel()

    def cancel(self, job_id: str) -> bool:
        """Cancel the job's run if this gateway runs it."""
        handle = self.handles.get(job_id)
        if handle is None:
            return False
        handle.cancel()
        return True

    @staticmethod
    def tasks(job: dict[str, Any], jobdir: Path) -> dict[str, Any]:
        """The run of a pipeline job and its tasks (name, state, attempts, cached, error)."""
        native = job.get("native_id") or ""
        if job.get("pipeline") is None:
            raise GatewayError(f"job {job['id']} is a command job: it has no tasks")
        if not native.startswith(RUN_PREFIX):
            return {"run": None, "state": None, "tasks": []}
        handle = attach(native[len(RUN_PREFIX):], workdir=jobdir)
        rows = handle.tasks()
        tasks = [{"name": t["name"], "state": t["state"], "attempts": t["attempts"], "cached": t["cached"],
                  "error": t["error"]} for t in rows]
        return {"run": handle.run_id, "state": handle.info["state"], "tasks": tasks}


def params_json(params: dict[str, Any]) -> str:
    """The parameters as stored (JSON); a 400 if they are not JSON."""
    try:
        return json.dumps(params, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise GatewayError(f"pipeline params must be JSON values: {exc}") from None
