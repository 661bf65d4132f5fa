"""Jobs run for real: the local runner driven step by step, and a real uvicorn server on a free
loopback port with the runner in the background, driven with httpx."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.gateway.runner import LocalRunner
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore, JobRequest, JobState, Principal

PY = sys.executable


def _alice(store: GatewayStore, budget: float = 100.0) -> Principal:
    store.create_project("lab", budget, members=["alice"])
    return store.authenticate(store.create_token("alice"))


def _until(runner: LocalRunner, store: GatewayStore, job_id: str, states: set[str]) -> dict[str, Any]:
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
    runner = LocalRunner(store, settings)
    # a shell would expand $HOME and run the part after ';'
    job = store.submit(who, JobRequest(f"{PY} -c 'import sys; print(sys.argv[1:])' '$HOME;' 'touch x'",
                                       nodes=2, cores_per_node=4, walltime_hours=10))
    assert job["core_hours_reserved"] == 80
    done = _until(runner, store, job["id"], {"completed", "failed"})
    assert done["state"] == "completed" and done["exit_code"] == 0 and done["end_date"]
    out = (settings.jobs_dir / job["id"] / "stdout").read_text()
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
    runner = LocalRunner(store, Settings(workdir=tmp_path, run_jobs=False))
    failing = store.submit(who, JobRequest(f"{PY} -c 'raise SystemExit(3)'"))
    missing = store.submit(who, JobRequest("no-such-program-corral-test"))
    assert _until(runner, store, failing["id"], {"failed"})["exit_code"] == 3
    gone = _until(runner, store, missing["id"], {"failed"})
    assert gone["exit_code"] == 127 and gone["failed"]


def test_runner_cancels_a_running_job(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    runner = LocalRunner(store, Settings(workdir=tmp_path, run_jobs=False))
    job = store.submit(who, JobRequest(f"{PY} -c 'import time; time.sleep(60)'"))
    _until(runner, store, job["id"], {"running"})
    assert store.cancel(who, job["id"])["state"] == "cancelling"
    done = _until(runner, store, job["id"], {"cancelled"})
    assert done["terminal_stage"] and done["core_hours_charged"] < 0.1


def test_orphans_are_recorded_at_start(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    job = store.submit(who, JobRequest("true"))
    assert store.claim_next() is not None  # running, but no runner follows it
    runner = LocalRunner(store, Settings(workdir=tmp_path, run_jobs=False, poll_seconds=60))
    runner.start()
    runner.stop()
    assert store.get_job(None, job["id"])["state"] == JobState.SYSTEM_ERROR
    assert store.list_projects(who)[0]["active_jobs"] == 0


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
        assert job["exit_code"] == 0 and job["runtime"] is not None and job["job_id"]
        assert client.get("/api/v1/projects").json()[0]["available_core_hours"] > 9.9
        assert client.get("/openapi.json").status_code == 200


def test_runner_kills_a_job_past_its_walltime(tmp_path: Path, store: GatewayStore) -> None:
    who = _alice(store)
    runner = LocalRunner(store, Settings(workdir=tmp_path, run_jobs=False))
    job = store.submit(who, JobRequest(f"{PY} -c 'import time; time.sleep(60)'", walltime_hours=0.5 / 3600))
    done = _until(runner, store, job["id"], {"failed", "completed"})
    assert done["state"] == "failed" and done["exit_code"] != 0
    assert done["core_hours_charged"] == pytest.approx(done["core_hours_reserved"])  # charged at most its walltime


def test_cancel_and_claim_of_one_queued_job_one_wins(store: GatewayStore) -> None:
    who = _alice(store)
    job = store.submit(who, JobRequest("true"))
    assert store.claim_next() is not None  # the runner was first
    assert store.cancel(who, job["id"])["state"] == "cancelling"
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 1 and project["active_jobs"] == 1  # nothing released twice
    store.finish(job["id"], JobState.CANCELLED, -15)
    store.finish(job["id"], JobState.CANCELLED, -15)  # a second end changes nothing
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 0 and project["active_jobs"] == 0
    assert [e["kind"] for e in store.ledger("lab")].count("release") == 1
