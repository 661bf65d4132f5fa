"""Local command jobs as detached processes, across a gateway that stopped at the worst moments: a
job started whose process id was never stored is followed (not run twice), and a job whose
process was killed while no gateway ran ends ``system_error``, charged once."""

from __future__ import annotations

import os
import pickle
import signal
import sys
import time
from pathlib import Path
from typing import Any

from corral.executors.base import ExecutorContext, TaskKind, TaskSpec
from corral.gateway.detached import DetachedLocal
from corral.gateway.runner import JobRunner, job_dir, job_resources, quoted
from corral.gateway.settings import ATTEMPT_DIR, Settings
from corral.gateway.store import GatewayStore, JobRequest
from corral.gateway.systems import local_system
from corral.worker.execute import ShellPayload

PY = sys.executable


class _Forgetful:
    """A listener of a gateway killed before it wrote anything down."""

    def submitted(self, attempt_id: str, native_id: str) -> None:
        pass

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        pass


def _start_unrecorded(store: GatewayStore, settings: Settings, command: str) -> tuple[dict[str, Any], int]:
    """A job claimed and started as a detached process by a gateway that then died (no native id stored)."""
    who = store.authenticate(store.create_token("alice"))
    job = store.submit(who, JobRequest(command, walltime_hours=0.1))
    [job] = store.claim(["local"], 1)
    jobdir = job_dir(settings, job["id"])
    spec = TaskSpec(attempt_id=job["id"], run_id="gw-local", task_key=job["id"].replace("-", ""), name="job",
                    group=job["id"], kind=TaskKind.SHELL, payload=pickle.dumps(ShellPayload(quoted(command))),
                    resources=job_resources(job, "local"), attempt=1, workdir=jobdir / ATTEMPT_DIR, cwd=jobdir)
    ctx = ExecutorContext(run_id="gw-local", work_root=settings.jobs_dir, cwd=settings.jobs_dir, max_parallel=1)
    dead = DetachedLocal(ctx)
    dead.start(_Forgetful())
    dead.submit([spec])
    pid = int((jobdir / ATTEMPT_DIR / "detached.json").read_text().split('"pid": ')[1].split(",")[0])
    return job, pid


def _run_until_ended(store: GatewayStore, settings: Settings, job_id: str) -> dict[str, Any]:
    runner = JobRunner(store, settings, {"local": local_system()})
    runner.reattach()
    deadline = time.monotonic() + 30
    try:
        while not (job := store.get_job(None, job_id))["terminal_stage"]:
            assert time.monotonic() < deadline, job
            runner.step()
            time.sleep(0.05)
    finally:
        runner.stop()
    return job


def test_started_job_whose_id_was_never_stored_is_followed(store: GatewayStore, tmp_path: Path) -> None:
    store.create_project("lab", 10.0, members=["alice"])
    settings = Settings(workdir=tmp_path, run_jobs=False)
    marks = tmp_path / "runs.txt"
    job, pid = _start_unrecorded(store, settings, f"{PY} -c 'open(\"{marks}\", \"a\").write(\"ran\\n\")'")
    assert store.get_job(None, job["id"])["native_id"] is None
    ended = _run_until_ended(store, settings, job["id"])
    assert ended["state"] == "completed" and ended["native_id"] == str(pid), store.history(None, job["id"])
    assert marks.read_text() == "ran\n"  # followed, not queued again and run a second time
    assert "queued" not in [e["state"] for e in store.history(None, job["id"])][1:]


def test_job_killed_while_no_gateway_ran_is_a_system_error(store: GatewayStore, tmp_path: Path) -> None:
    store.create_project("lab", 10.0, members=["alice"])
    settings = Settings(workdir=tmp_path, run_jobs=False)
    job, pid = _start_unrecorded(store, settings, "sleep 30")
    os.killpg(pid, signal.SIGKILL)  # by someone else, while no gateway runs
    os.waitpid(pid, 0)  # this test's process started it: reap it, as init would have
    ended = _run_until_ended(store, settings, job["id"])
    assert ended["state"] == "system_error" and ended["failed"]
    kinds = [e["kind"] for e in store.ledger("lab") if e["job"] == job["id"]]
    assert kinds[0] == "reserve" and kinds[-1] == "release" and kinds.count("charge") <= 1, kinds  # once
    [project] = store.list_projects(store.authenticate(store.create_token("alice")))
    assert project["active_jobs"] == 0 and project["reserved_core_hours"] == 0
