"""Pipeline jobs over /api/v1: a Corral pipeline of the gateway's pipelines directory, run by the
gateway on the project's HPC system (the rig's real Grid Engine), its tasks visible through the
job; files outside the pipelines directory are refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.gateway.store import GatewayStore

from .conftest import require_cluster

PIPELINE = '''
from corral import pipeline, task

@task
def square(x: int) -> int:
    return x * x

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def squares(n: int = 3) -> int:
    return total(square.map(x=range(n)))
'''
SGE_SYSTEM = """
[systems.grid]
executor = "sge"
max_nodes = 1
max_cores_per_node = 2
max_walltime_hours = 1
[systems.grid.options]
poll_interval = 0.2
max_poll_interval = 1.0
marker_interval = 0.1
lost_grace = 5.0
kill_grace = 0.5
"""


@pytest.fixture
def systems_toml() -> str:
    require_cluster("sge")
    return SGE_SYSTEM


def _until(client: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 240  # the rig's Grid Engine is shared: jobs may wait a while
    while True:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["terminal_stage"]:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def test_pipeline_runs_on_sge_and_its_tasks_are_visible(server: str, store: GatewayStore, tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "squares.py").write_text(PIPELINE)
    (tmp_path / "outside.py").write_text(PIPELINE)
    store.create_project("grid", 10.0, members=["alice"], system="grid")
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    with httpx.Client(base_url=server, headers=headers, timeout=30) as client:
        for bad in ["../outside.py", "/etc/passwd", "missing.py"]:
            r = client.post("/api/v1/jobs", json={"pipeline": {"file": bad}})
            assert r.status_code == 400 and r.json()["detail"].startswith("pipeline file"), r.text
        both = client.post("/api/v1/jobs", json={"command": "true", "pipeline": {"file": "squares.py"}})
        assert both.status_code == 400 and "not both" in both.json()["detail"]
        r = client.post("/api/v1/jobs", json={"pipeline": {"file": "squares.py", "name": "squares",
                                                           "params": {"n": 4}}, "title": "squares on SGE"})
        assert r.status_code == 201, r.text
        job = _until(client, r.json()["id"])
        assert job["state"] == "completed", (job, client.get(f"/api/v1/jobs/{job['id']}/history").json())
        assert job["pipeline"] == {"file": "squares.py", "name": "squares", "params": {"n": 4}}
        run = client.get(f"/api/v1/jobs/{job['id']}/tasks").json()
        assert run["state"] == "succeeded" and job["native_id"] == f"run:{run['run']}"
        names = sorted(t["name"] for t in run["tasks"])
        assert names == ["square[0]", "square[1]", "square[2]", "square[3]", "total"], names
        assert all(t["state"] == "succeeded" and t["attempts"] >= 1 for t in run["tasks"]), run
        jobdir = tmp_path / ".corral" / "gateway-jobs" / job["id"]
        scripts = list((jobdir / ".corral" / "work").rglob("job.sh"))
        assert scripts and all("\n#$ " in s.read_text() for s in scripts)  # Grid Engine job scripts
        command_job = client.post("/api/v1/jobs", json={"command": "true"}).json()
        assert client.get(f"/api/v1/jobs/{command_job['id']}/tasks").status_code == 400
