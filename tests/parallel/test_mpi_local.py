"""A 4-rank MPI task on the local executor: mpirun -np 4 for an mpi4py reduction, a C program
and a shell command, each rank's output in the task's stdout.log, 4 cores counted against -j."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import Resources
from corral.executors.base import TaskKind
from corral.launchers import launch_argv

from .mpihelp import OMPI_ENV, PIPE, attempts, check_logs, compile_hello, need_mpi, run_source

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def ompi(monkeypatch: pytest.MonkeyPatch) -> None:
    need_mpi()
    for k, v in OMPI_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.mark.usefixtures("ompi")
def test_four_ranks_local(tmp_path: Path) -> None:
    exe = compile_hello(tmp_path)
    work = tmp_path / "work"
    res = run_source(work, PIPE.format(launcher="mpi"), {"n": 10, "hello": str(exe)})
    assert res.ok, res.errors
    total, size = res.value[0]
    assert (total, size) == (60, 4)  # rank 0's value: sum of rank*10 over 4 ranks
    rows = attempts(work, res.run_id)
    check_logs(rows, work)
    assert {r["resources"]["tasks"] for r in rows} == {4}


@pytest.mark.usefixtures("ompi")
def test_failing_rank_fails_the_task(tmp_path: Path) -> None:
    res = run_source(tmp_path / "work", '''
from corral import Resources, pipeline, task
import os

@task(resources=Resources(tasks=2), launcher="mpirun")
def bad() -> int:
    if os.environ.get("OMPI_COMM_WORLD_RANK") == "1":
        raise ValueError("rank one broke")
    return 1

@pipeline
def p():
    return bad()
''', {})
    assert not res.ok
    assert "ranks exited with status" in " ".join(res.errors)


def test_launch_argv_per_launcher() -> None:
    r = Resources(nodes=2, tasks_per_node=4, cores_per_task=2)
    assert launch_argv(r, "mpirun") == ["mpirun", "-np", "8", "--map-by", "ppr:4:node"]
    assert launch_argv(r, "srun", ["--mpi=pmix"]) == [
        "srun", "--ntasks=8", "--cpus-per-task=2", "--nodes=2", "--ntasks-per-node=4",
        "--mpi=pmix"]
    assert launch_argv(r, "none") == []
    assert r.total_cores == 16 and TaskKind.SHELL.value
