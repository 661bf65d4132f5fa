"""Jobs on the rig's real SLURM through Corral's slurm executor: a py-tes client submits a task that
runs there and fetches its output; a hostile title and command reach neither a directive nor a
shell unquoted; the HPC system's limits refuse a job before anything is submitted."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest
import tes

from corral.gateway.store import GatewayStore

from .conftest import require_cluster

SLURM_SYSTEM = """
[systems.cluster]
executor = "slurm"
max_nodes = 1
max_cores_per_node = 2
max_walltime_hours = 1
queues = ["debug"]
max_memory_gb = 2
[systems.cluster.options]
poll_interval = 0.2
max_poll_interval = 1.0
marker_interval = 0.1
lost_grace = 5.0
kill_grace = 0.5
"""


@pytest.fixture
def systems_toml() -> str:
    require_cluster("slurm")
    return SLURM_SYSTEM


@pytest.fixture
def alice(server: str, store: GatewayStore) -> tes.HTTPClient:
    store.create_project("hpc", 10.0, members=["alice"], system="cluster")
    return tes.HTTPClient(server, token=store.create_token("alice"), timeout=10)


def _wait(client: tes.HTTPClient, task_id: str) -> tes.Task:
    deadline = time.monotonic() + 180  # the rig's SLURM is shared: jobs may pend a while
    while (task := client.get_task(task_id, "FULL")).state not in {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR",
                                                                     "CANCELED"}:
        assert time.monotonic() < deadline, task
        time.sleep(0.2)
    return task


def test_py_tes_task_runs_on_slurm_and_fetches_its_output(alice: tes.HTTPClient, store: GatewayStore,
                                                          tmp_path: Path) -> None:
    task_id = alice.create_task(tes.Task(
        name="on slurm",
        executors=[tes.Executor(image="ignored", command=[
            "sh", "-c", "echo hello from $SLURM_JOB_ID; echo result > out.txt"])],
        resources=tes.Resources(cpu_cores=1, backend_parameters={"walltime_hours": "0.1"}), tags={"project": "hpc"}))
    task = _wait(alice, task_id)
    job = store.get_job(None, task_id)
    assert task.state == "COMPLETE", (task, job)
    native = job["native_id"]
    assert native and native.isdigit() and job["system"] == "cluster" and job["queue"] == "debug"
    assert task.logs[0].logs[0].stdout == f"hello from {native}\n"  # it ran as that SLURM job
    assert task.logs[0].logs[0].exit_code == 0
    jobs_dir = tmp_path / ".corral" / "gateway-jobs"
    assert (jobs_dir / task_id / "out.txt").read_text() == "result\n"  # in the job's own directory
    assert not (jobs_dir / "out.txt").exists()  # not in the directory every user's jobs share
    states = [e["state"] for e in store.history(None, task_id)]
    assert states[:2] == ["queued", "initializing"] and states[-1] == "completed"
    [project] = store.list_projects(store.authenticate(alice.token))
    assert project["active_jobs"] == 0 and project["reserved_core_hours"] == 0
    assert 0 < project["charged_core_hours"] < 0.1


def test_hostile_title_and_command_stay_quoted(alice: tes.HTTPClient, store: GatewayStore, tmp_path: Path) -> None:
    title = 'evil\n#SBATCH --wrap="touch /tmp/corral-pwned"\n$(touch pwned-title) `touch pwned-tick`'
    argv = ["echo", "$(touch pwned-cmd)", ";", "touch", "pwned-semicolon", "&&", "`id`", "\n#SBATCH --mem=1"]
    task_id = alice.create_task(tes.Task(name=title, executors=[tes.Executor(image="x", command=argv)],
                                         tags={"project": "hpc"}))
    task = _wait(alice, task_id)
    assert task.state == "COMPLETE", task
    assert task.logs[0].logs[0].stdout == " ".join(argv[1:]) + "\n"  # echo got every word as it was
    jobdir = tmp_path / ".corral" / "gateway-jobs" / task_id
    assert not list(jobdir.parent.rglob("pwned*")) and not Path("/tmp/corral-pwned").exists()
    script = (jobdir / ".corral" / "job.sh").read_text()
    directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
    options = {d.split()[1].split("=")[0] for d in directives}
    assert "--wrap" not in options and "--mem" not in options, directives  # no directive was injected
    assert all(len(d.split()) == 2 and "$(" not in d and "`" not in d for d in directives), directives
    [name] = [d for d in directives if d.startswith("#SBATCH --job-name=")]
    assert name.split("=", 1)[1].replace("-", "").replace("_", "").replace(".", "").isalnum(), name


def test_limits_refuse_before_submission(server: str, store: GatewayStore) -> None:
    store.create_project("hpc", 1000.0, members=["alice"], system="cluster")
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        cases: list[tuple[dict[str, object], str]] = [
            ({"nodes": 2}, "at most 1 node(s)"), ({"cores_per_node": 8}, "at most 2 core(s)"),
            ({"walltime_hours": 5}, "at most 1 h"), ({"queue": "long"}, "no queue 'long'"),
            ({"memory_gb": 3}, "allows at most 2 GB of memory per node; this job asks for 3 GB")]
        for body, words in cases:
            r = client.post("/api/v1/jobs", json={"command": "true", **body})
            assert r.status_code == 400 and words in r.json()["detail"], r.text
        for params, words in [
            ({"partition": "x", "qos": "normal"},
             "takes no backend parameter partition; allowed: account, constraint, qos"),
            ({"account": "lab\n#SBATCH --wrap=id"},
             "backend parameter account='lab\\n#SBATCH --wrap=id' is not a plain"),
            ({"qos": "a b"}, "is not a plain name")]:
            r = client.post("/api/v1/jobs", json={"command": "true", "backend_parameters": params})
            assert r.status_code == 422 and words in r.json()["detail"], r.text
        r = client.get("/api/v1/jobs")
        assert r.json()["total"] == 0  # nothing was queued, nothing reserved
        assert client.get("/api/v1/projects/hpc").json()["reserved_core_hours"] == 0
        [system] = client.get("/api/v1/systems").json()
        assert system == {"name": "cluster", "kind": "slurm", "max_nodes": 1, "max_cores_per_node": 2,
                          "max_walltime_hours": 1.0, "queues": ["debug"], "max_memory_gb": 2.0,
                          "backend_parameters": ["account", "constraint", "qos"]}


def test_memory_and_backend_parameters_reach_slurm(server: str, store: GatewayStore, tmp_path: Path) -> None:
    store.create_project("hpc", 10.0, members=["alice"], system="cluster")
    headers = {"Authorization": f"Bearer {store.create_token('alice')}"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        r = client.post("/api/v1/jobs", json={"command": "true", "walltime_hours": 0.1, "memory_gb": 1,
                                              "backend_parameters": {"qos": "normal"}})
        assert r.status_code == 201, r.text
        assert (r.json()["memory_gb"], r.json()["backend_parameters"]) == (1.0, {"qos": "normal"})
        deadline = time.monotonic() + 180
        while (job := client.get(f"/api/v1/jobs/{r.json()['id']}").json())["state"] != "completed":
            assert not job["terminal_stage"] and time.monotonic() < deadline, job
            time.sleep(0.2)
    script = (tmp_path / ".corral" / "gateway-jobs" / job["id"] / ".corral" / "job.sh").read_text()
    assert "#SBATCH --mem=1024M" in script and "#SBATCH --qos=normal" in script, script
    shown = subprocess.run(["scontrol", "show", "job", job["native_id"]],  # noqa: S603
                           capture_output=True, text=True, check=True, timeout=30).stdout.split()
    assert {"MinMemoryNode=1G", "QOS=normal"} <= set(shown), shown  # what SLURM itself holds for the job
