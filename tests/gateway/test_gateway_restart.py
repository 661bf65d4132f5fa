"""A gateway killed with SIGKILL mid-job and started again loses no job and charges each once: a
real ``corral gateway serve`` process (uvicorn on a free loopback port) running jobs on the rig's
real SLURM; one job ends while the gateway is down, one is still running when it comes back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.gateway.store import GatewayStore

from .conftest import require_cluster
from .test_gateway_slurm import SLURM_SYSTEM


@pytest.fixture
def systems_toml() -> str:
    require_cluster("slurm")
    return SLURM_SYSTEM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Serve:
    """``corral gateway serve`` as a child process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "corral", "gateway", "serve", "-C", str(self.workdir), "--port", str(self.port)]
        with open(self.workdir / f"serve-{time.monotonic_ns()}.log", "wb") as log:  # the child keeps its copy
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                         start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"the gateway exited: {self.proc.returncode}"
            try:
                httpx.get(f"{self.url}/ga4gh/tes/v1/service-info", timeout=1)
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    s = Serve(tmp_path)
    yield s
    s.stop()


def _until(client: httpx.Client, job_id: str, wanted: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 180  # the rig's SLURM is shared: jobs may pend a while
    while True:
        job: dict[str, Any] = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in wanted:
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def test_sigkill_mid_job_loses_nothing_and_charges_once(serve: Serve, store: GatewayStore) -> None:
    store.create_project("hpc", 10.0, members=["alice"], system="cluster")
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    serve.start()
    with httpx.Client(base_url=serve.url, headers=headers, timeout=10) as client:
        short = client.post("/api/v1/jobs", json={"command": "sleep 1", "walltime_hours": 0.1}).json()
        long = client.post("/api/v1/jobs", json={"command": "sh -c 'sleep 6; echo done'", "walltime_hours": 0.1}).json()
        running = [_until(client, job["id"], {"running"}) for job in (short, long)]
        serve.kill()  # SIGKILL: no shutdown code runs
        time.sleep(2.5)  # the short job ends while no gateway is there
        serve.start()
        client.base_url = httpx.URL(serve.url)
        ended = [_until(client, job["id"], {"completed", "failed", "timeout", "system_error", "cancelled"})
                 for job in (short, long)]
        assert [job["state"] for job in ended] == ["completed", "completed"], ended
        assert [job["native_id"] for job in ended] == [job["native_id"] for job in running]  # the same SLURM jobs
        assert client.get(f"/api/v1/jobs/{long['id']}/history").json()[-1]["state"] == "completed"
        project = client.get("/api/v1/projects/hpc").json()
    assert project["active_jobs"] == 0 and project["reserved_core_hours"] == 0
    ledger = store.ledger("hpc")
    for job in ended:
        kinds = [e["kind"] for e in ledger if e["job"] == job["id"]]
        assert kinds == ["reserve", "charge", "release"], kinds  # charged once
        charged = sum(e["core_hours"] for e in ledger if e["job"] == job["id"] and e["kind"] == "charge")
        assert charged == pytest.approx(job["core_hours_charged"]) and charged < 10 / 3600  # seconds, not the outage
    assert project["charged_core_hours"] == pytest.approx(sum(job["core_hours_charged"] for job in ended))


SLOW_PIPELINE = '''
import time
from pathlib import Path
from corral import pipeline, task

@task
def step(i: int, log: str) -> int:
    time.sleep(0.5 + i * 0.7)
    with open(log, "a") as fh:
        fh.write(f"{i}\\n")
    return i

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def slow(log: str) -> int:
    return total(step.map(i=range(4), log=log))
'''


def test_sigkill_mid_pipeline_resumes_its_run(serve: Serve, store: GatewayStore, tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").unlink()  # only the local system: the pipeline's tasks run on this machine
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "slow.py").write_text(SLOW_PIPELINE)
    log = tmp_path / "steps.log"
    store.create_project("lab", 10.0, members=["alice"])
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    serve.start()
    with httpx.Client(base_url=serve.url, headers=headers, timeout=10) as client:
        job = client.post("/api/v1/jobs", json={"pipeline": {"file": "slow.py", "params": {"log": str(log)}}}).json()
        deadline = time.monotonic() + 60
        while not log.exists():
            assert time.monotonic() < deadline, client.get(f"/api/v1/jobs/{job['id']}").json()
            time.sleep(0.05)
        run_before = client.get(f"/api/v1/jobs/{job['id']}").json()["native_id"]
        serve.kill()  # SIGKILL: the engine thread dies with the gateway
        serve.start()
        client.base_url = httpx.URL(serve.url)
        ended = _until(client, job["id"], {"completed", "failed", "timeout", "system_error", "cancelled"})
        history = [e["state"] for e in client.get(f"/api/v1/jobs/{job['id']}/history").json()]
        assert ended["state"] == "completed", history
        run = client.get(f"/api/v1/jobs/{job['id']}/tasks").json()
    assert run_before.startswith("run:") and ended["native_id"] == run_before  # the same run, resumed
    assert history == ["queued", "initializing", "running"] * 2 + ["completed"], history  # queued again, resumed
    assert run["state"] == "succeeded" and len(run["tasks"]) == 5
    assert set(log.read_text().split()) == {"0", "1", "2", "3"}
    kinds = [e["kind"] for e in store.ledger("lab") if e["job"] == job["id"]]
    assert kinds.count("charge") == 1 and kinds.count("reserve") == 1, kinds


def test_sigkill_mid_local_job_follows_it_to_its_end(serve: Serve, store: GatewayStore, tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").unlink()  # only the local system: jobs are processes of this machine
    store.create_project("lab", 10.0, members=["alice"])
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    serve.start()
    with httpx.Client(base_url=serve.url, headers=headers, timeout=10) as client:
        short = client.post("/api/v1/jobs", json={"command": "sh -c 'sleep 1; echo short'", "walltime_hours": 0.1})
        long = client.post("/api/v1/jobs", json={"command": "sh -c 'sleep 4; echo long'", "walltime_hours": 0.1})
        jobs = [r.json() for r in (short, long)]
        running = [_until(client, job["id"], {"running"}) for job in jobs]
        serve.kill()  # SIGKILL: no shutdown code runs
        pids = [int(job["native_id"]) for job in running]
        time.sleep(2.5)  # the short job ends while no gateway is there
        assert os.path.exists(f"/proc/{pids[1]}")  # the long one outlived the gateway
        serve.start()
        client.base_url = httpx.URL(serve.url)
        ended = [_until(client, job["id"], {"completed", "failed", "timeout", "system_error", "cancelled"})
                 for job in jobs]
        assert [job["state"] for job in ended] == ["completed", "completed"], ended
        assert [job["native_id"] for job in ended] == [str(pid) for pid in pids]  # the same processes
        outputs = [client.get(f"/api/v1/jobs/{job['id']}/logs/stdout").text for job in jobs]
        project = client.get("/api/v1/projects/lab").json()
    assert outputs == ["short\n", "long\n"]
    assert project["active_jobs"] == 0 and project["reserved_core_hours"] == 0
    ledger = store.ledger("lab")
    for job in ended:
        kinds = [e["kind"] for e in ledger if e["job"] == job["id"]]
        assert kinds == ["reserve", "charge", "release"], kinds  # charged once
        assert 0 < job["core_hours_charged"] < 10 / 3600  # its seconds of running, not the outage
