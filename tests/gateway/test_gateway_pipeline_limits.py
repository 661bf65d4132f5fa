"""Pipeline jobs on the local system, the runner driven step by step: a job's walltime ends its run
(state ``timeout``, its tasks cancelled, the reservation released), and the charge is what its
tasks used (cores x wall time of the run's attempts, as the Corral run recorded them), not the
engine's wall time x the job's cores."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from corral import Client
from corral.gateway.runner import JobRunner, job_dir
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayError, GatewayStore, JobRequest, Principal
from corral.gateway.systems import checker, local_system

PIPELINE = '''
import time
from corral import Resources, pipeline, task

@task(resources=Resources(cores=2))
def wide(i: int, nap: float) -> int:
    time.sleep(nap)
    return i

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def naps(n: int = 2, nap: float = 0.3) -> int:
    return total(wide.map(i=range(n), nap=nap))
'''


@pytest.fixture
def alice(store: GatewayStore, tmp_path: Path) -> Principal:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "naps.py").write_text(PIPELINE)
    store.create_project("lab", 10.0, members=["alice"])
    return store.authenticate(store.create_token("alice"))


def _run(store: GatewayStore, tmp_path: Path, who: Principal, hours: float, params: dict[str, Any]) -> dict[str, Any]:
    runner = JobRunner(store, Settings(workdir=tmp_path, run_jobs=False), {"local": local_system()})
    job = store.submit(who, JobRequest("", pipeline_file="naps.py", pipeline_params=json.dumps(params),
                                       cores_per_node=1, walltime_hours=hours))
    deadline = time.monotonic() + 60
    try:
        while not (ended := store.get_job(None, job["id"]))["terminal_stage"]:
            assert time.monotonic() < deadline, ended
            runner.step()
            time.sleep(0.05)
    finally:
        runner.stop()
    return ended


def test_pipeline_job_is_charged_its_tasks_core_hours(store: GatewayStore, tmp_path: Path, alice: Principal) -> None:
    job = _run(store, tmp_path, alice, 1.0, {"n": 2, "nap": 0.3})
    assert job["state"] == "completed", store.history(None, job["id"])
    handle = Client(job_dir(Settings(workdir=tmp_path), job["id"])).run(job["native_id"].removeprefix("run:"))
    attempts = handle.attempts()
    assert len(attempts) == 3 and {a["state"] for a in attempts} == {"succeeded"}
    walls = [(int((a["resources"] or {}).get("cores", 1)), float(a["wall"] or 0)) for a in attempts]
    expected = sum(cores * wall for cores, wall in walls) / 3600
    assert sum(wall for cores, wall in walls if cores == 2) >= 0.6  # two 2-core naps of 0.3 s
    assert job["core_hours_charged"] == pytest.approx(expected)
    info = handle.info
    engine_wall = (info["finished_at"] or 0) - (info["started_at"] or 0)
    assert job["core_hours_charged"] != pytest.approx(engine_wall / 3600)  # not the engine's wall time x 1 core
    ledger = [e for e in store.ledger("lab") if e["job"] == job["id"]]
    assert [e["kind"] for e in ledger] == ["reserve", "charge", "release"]
    with pytest.raises(GatewayError, match="a pipeline job takes no memory_gb or backend_parameters"):
        store.submit(alice, JobRequest("", pipeline_file="naps.py", memory_gb=1), checker({"local": local_system()}))
    assert ledger[1]["core_hours"] == pytest.approx(expected)
    assert ledger[2]["core_hours"] == pytest.approx(1.0 - expected)


def test_pipeline_job_past_its_walltime_ends_timeout(store: GatewayStore, tmp_path: Path, alice: Principal) -> None:
    job = _run(store, tmp_path, alice, 2 / 3600, {"n": 2, "nap": 60})  # a walltime of 2 s; tasks of 60 s
    history = store.history(None, job["id"])
    assert job["state"] == "timeout" and job["failed"], history
    assert "past its walltime" in history[-1]["note"]
    began, ended = (datetime.fromisoformat(e["at"]) for e in (history[2], history[-1]))
    assert history[2]["state"] == "running" and (ended - began).total_seconds() < 30  # not after its 60 s tasks
    handle = Client(job_dir(Settings(workdir=tmp_path), job["id"])).run(job["native_id"].removeprefix("run:"))
    assert handle.info["state"] == "cancelled"
    assert {t["state"] for t in handle.tasks()} <= {"cancelled", "pending", "blocked"}, handle.tasks()
    used = sum((a["resources"] or {}).get("cores", 1) * ((a["ended_at"] or 0) - a["started_at"])
               for a in handle.attempts() if a["started_at"] is not None) / 3600
    assert used > 0 and job["core_hours_charged"] == pytest.approx(min(used, job["core_hours_reserved"]))
    [project] = store.list_projects(alice)
    assert project["active_jobs"] == 0 and project["reserved_core_hours"] == 0
    ledger = [e for e in store.ledger("lab") if e["job"] == job["id"]]
    assert [e["kind"] for e in ledger][:2] == ["reserve", "charge"], ledger  # a release if it used less
    assert sum(e["core_hours"] for e in ledger[1:]) == pytest.approx(job["core_hours_reserved"])
