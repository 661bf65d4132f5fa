"""Jobs run for real through Corral's local executor: the runner driven step by step, and a real
uvicorn server on a free loopback port with the runner in the background, driven with httpx."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.gateway.runner import JobRunner, log_file
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore, JobRequest, JobState, Principal
from corral.gateway.systems import local_system

PY = sys.executable


def _alice(store: GatewayStore, budget: float = 100.0) -> Principal:
    store.create_project("lab", budget, members=["alice"])
    return store.authenticate(store.create_token("alice"))


def _runner(store: GatewayStore, settings: Settings) -> JobRunner:
    return JobRunner(store, settings, {"local": local_system()})


def _until(runner: JobRunner, store: GatewayStore, job_id: str, states: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runner.step()
        job = store.get_job(None, job_id)
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {store.get_job(None, job_id)}")


def test_runner_runs_argv_without_shell_and_charges_actual_runtime(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    settings = Settings(workdir=tmp_path, run_jobs=False)
    runner = _runner(store, settings)
    # a shell would expand $HOME and run the part after ';'
    job = store.submit(who, JobRequest(f"{PY} -c 'import sys; print(sys.argv[1:])' '$HOME;' 'touch x'",
                                       nodes=2, cores_per_node=4, walltime_hours=10))
    assert job["core_hours_reserved"] == 80
    done = _until(runner, store, job["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["exit_code"] == 0 and done["end_date"]
    out = log_file(settings, job["id"], "stdout").read_text()
    assert out.strip() == "['$HOME;', 'touch x']"
    assert not (settings.jobs_dir / job["id"] / "x").exists()
    assert 0 <= done["core_hours_charged"] < 1  # 8 cores for well under a minute
    kinds = [e["kind"] for e in store.ledger("lab")]
    assert kinds[0] == "reserve" and kinds[-1] == "release"
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 0 and project["active_jobs"] == 0
    assert project["charged_core_hours"] == pytest.approx(done["core_hours_charged"])


def test_runner_failed_and_missing_commands(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    runner = _runner(store, Settings(workdir=tmp_path, run_jobs=False))
    failing = store.submit(who, JobRequest(f"{PY} -c 'raise SystemExit(3)'"))
    missing = store.submit(who, JobRequest("no-such-program-corral-test"))
    assert _until(runner, store, failing["id"], {"failed"})["exit_code"] == 3
    gone = _until(runner, store, missing["id"], {"failed"})
    assert gone["exit_code"] == 127 and gone["failed"]


def test_runner_cancels_a_running_job(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    runner = _runner(store, Settings(workdir=tmp_path, run_jobs=False))
    job = store.submit(who, JobRequest(f"{PY} -c 'import time; time.sleep(60)'"))
    _until(runner, store, job["id"], {"running"})
    assert store.cancel(who, job["id"])["state"] == "cancelling"
    done = _until(runner, store, job["id"], {"cancelled"})
    assert done["terminal_stage"] and done["core_hours_charged"] < 0.1


def test_jobs_of_a_previous_gateway_at_start(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    lost, unsent = store.submit(who, JobRequest("true")), store.submit(who, JobRequest("true"))
    assert len(store.claim(["local"], 2)) == 2  # both initializing, no runner follows them
    store.set_native_id(lost["id"], "999999")  # a local process of the previous gateway
    runner = _runner(store, Settings(workdir=tmp_path, run_jobs=False, poll_seconds=60))
    runner.reattach()
    assert store.get_job(None, lost["id"])["state"] == JobState.SYSTEM_ERROR
    assert store.get_job(None, unsent["id"])["state"] == JobState.QUEUED  # never submitted: queued again
    assert _until(runner, store, unsent["id"], {"completed"})["exit_code"] == 0
    runner.stop()
    assert store.list_projects(who)[0]["active_jobs"] == 0
    assert [e["state"] for e in store.history(who, unsent["id"])] == [
        "queued", "initializing", "queued", "initializing", "running", "completed"]


def test_real_server_runs_a_job_end_to_end(server: str, store: GatewayStore) -> None:
    store.create_project("lab", 10.0, members=["alice"])
    token = store.create_token("alice")
    headers = {"Authorization": f"Bearer {token}"}
    legacy = {"command": f"{PY} -c 'print(6*7)'", "node_number": 1, "core_number": 2, "runtime": 1,
              "title": "answer"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        r = client.post("/api/v1/jobs", json=legacy)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while (job := client.get(f"/api/v1/jobs/{job_id}").json())["state"] != "completed":
            assert not job["terminal_stage"], job
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job["exit_code"] == 0 and job["runtime"] is not None and job["state"] == "completed"
        assert client.get("/api/v1/projects").json()[0]["available_core_hours"] > 9.9
        assert client.get("/openapi.json").status_code == 200


def test_runner_kills_a_job_past_its_walltime(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    runner = _runner(store, Settings(workdir=tmp_path, run_jobs=False))
    job = store.submit(who, JobRequest(f"{PY} -c 'import time; time.sleep(60)'", walltime_hours=0.5 / 3600))
    done = _until(runner, store, job["id"], {"failed", "completed", "timeout"})
    assert done["state"] == "timeout" and done["failed"]
    assert done["core_hours_charged"] == pytest.approx(done["core_hours_reserved"])  # charged at most its walltime


def test_cancel_and_claim_of_one_queued_job_one_wins(store: GatewayStore) -> None:
    who = _alice(store)
    job = store.submit(who, JobRequest("true"))
    assert store.claim(["local"], 5)[0]["id"] == job["id"]  # the runner was first
    assert store.cancel(who, job["id"])["state"] == "cancelling"
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 1 and project["active_jobs"] == 1  # nothing released twice
    store.finish(job["id"], JobState.CANCELLED, -15)
    store.finish(job["id"], JobState.CANCELLED, -15)  # a second end changes nothing
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 0 and project["active_jobs"] == 0
    assert [e["kind"] for e in store.ledger("lab")].count("release") == 1
