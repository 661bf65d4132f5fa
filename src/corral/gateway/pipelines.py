"""Pipeline jobs: a Corral pipeline (a file of the gateway's pipelines directory, a pipeline name
and parameters) run by the gateway through :func:`corral.api.start` on the job's HPC system (the
system's executor kind and options), with its run store in the job's directory.

The file must be inside ``<workdir>/pipelines/`` (admins install the pipelines users may run: a
pipeline file is Python the gateway imports). The job's native id is ``run:<run id>``; its tasks
and their states come from the run's store. The engine runs in a thread of the gateway: after a
restart the job is queued again, and starting it again resumes its run (finished tasks come from
the cache). The reservation is nodes x cores x walltime as for a command job; the charge is that
many cores for the run's wall time (its tasks' own use on the cluster is not summed).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.api import RunHandle, attach, start
from corral.loading import load_pipeline
from corral.states import TERMINAL_RUN_STATES, RunState

from .files import resolve
from .store import GatewayError, GatewayStore, JobState, NotFound
from .systems import HpcSystem

log = logging.getLogger(__name__)

RUN_PREFIX = "run:"
STATE_OF_RUN = {RunState.SUCCEEDED: JobState.COMPLETED, RunState.FAILED: JobState.FAILED,
                RunState.CANCELLED: JobState.CANCELLED, RunState.INTERRUPTED: JobState.SYSTEM_ERROR}


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
        self.store.mark_running(job["id"], datetime.now(UTC).replace(tzinfo=None))

    def poll(self) -> None:
        """End the jobs whose runs have ended."""
        for job_id, handle in list(self.handles.items()):
            state = handle.state
            if state in TERMINAL_RUN_STATES or state is RunState.INTERRUPTED:
                del self.handles[job_id]
                ended = STATE_OF_RUN.get(state, JobState.FAILED)
                self.store.finish(job_id, ended, 0 if ended is JobState.COMPLETED else None,
                                  note=f"run {handle.run_id} {state}")

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
