"""Directives of parallel (MPI) jobs on every scheduler, golden-tested, and their validation:
8 ranks on 2 nodes with 2 cores each; srun/mpirun prefixes written into the payload."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, ResourceError
from corral.executors import create_executor
from corral.executors.base import ExecutorContext, TaskKind, TaskSpec
from corral.executors.batch.base import BatchExecutor
from corral.resources import Resources
from corral.worker.execute import ShellPayload

GOLDEN = Path(__file__).parent / "golden"
CTX = ExecutorContext(
    run_id="r20240101", work_root=Path("/proj/.corral/work/r20240101"), cwd=Path("/proj"),
    max_parallel=8, python="/opt/venv/bin/python",
)
MPI = Resources(nodes=2, tasks_per_node=4, cores_per_task=2, memory="16G", walltime="2h",
                launcher="mpi")


def make(kind: str, **options: Any) -> BatchExecutor:
    ex = create_executor(kind, options, CTX)
    assert isinstance(ex, BatchExecutor)
    return ex


def spec(res: Resources, payload: bytes = b"") -> TaskSpec:
    return TaskSpec(
        attempt_id="r20240101.1.1", run_id="r20240101", task_key="ab" * 8, name="sim",
        group="sim", kind=TaskKind.SHELL, payload=payload, resources=res, attempt=1,
        workdir=CTX.work_root / "0001" / "1", cwd=CTX.cwd,
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CORRAL_REGEN_GOLDEN") == "1" or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; CORRAL_REGEN_GOLDEN=1 to accept"


@pytest.mark.parametrize("kind", ["slurm", "sge", "pbs", "lsf"])
def test_golden_mpi(kind: str) -> None:
    check_golden(f"{kind}-mpi.sh", make(kind).render_job([spec(MPI)]).script)


def directives(kind: str, res: Resources) -> list[str]:
    script = make(kind).render_job([spec(res)]).script
    return [line for line in script.splitlines() if line.startswith(("#SBATCH", "#$", "#PBS",
                                                                      "#BSUB"))]


def test_one_node_four_ranks() -> None:
    four = Resources(tasks=4)
    assert "#SBATCH --ntasks=4" in directives("slurm", four)
    assert "#$ -pe mpi 4" in directives("sge", four)
    assert "#PBS -l select=1:ncpus=4:mpiprocs=4" in directives("pbs", four)
    lsf = directives("lsf", four)
    assert "#BSUB -n 4" in lsf and '#BSUB -R "span[hosts=1]"' in lsf
    assert "#$ -pe openmpi 4" in [
        line for line in make("sge", mpi_pe="openmpi").render_job([spec(four)]).script.splitlines()]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tasks": 3, "nodes": 4}, "fewer than nodes"),
    ({"tasks": 6, "nodes": 2, "tasks_per_node": 4}, "not nodes x tasks_per_node"),
    ({"tasks": 0}, "positive integer"),
    ({"cores": 2, "cores_per_task": 4}, "disagree"),
    ({"launcher": "ssh"}, "not one of"),
])
def test_parallel_requests_refused_before_submission(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        Resources(**kwargs)


def test_pbs_refuses_uneven_ranks() -> None:
    with pytest.raises(ResourceError, match="multiple of nodes"):
        directives("pbs", Resources(tasks=5, nodes=2))


def test_executor_launcher_option_checked() -> None:
    with pytest.raises(ConfigError, match="launcher='ssh'"):
        make("slurm", launcher="ssh")


@pytest.mark.parametrize(("kind", "prefix"), [
    ("slurm", "srun --ntasks=8 --cpus-per-task=2 --nodes=2 --ntasks-per-node=4 --mpi=pmix"),
    ("sge", "mpirun -np 8 --map-by ppr:4:node --mpi=pmix"),
])
def test_payload_runs_under_the_launcher(tmp_path: Path, kind: str, prefix: str) -> None:
    ctx = ExecutorContext(run_id="r1", work_root=tmp_path, cwd=tmp_path, max_parallel=1,
                          python="python3")
    ex = create_executor(kind, {"launcher_args": ["--mpi=pmix"]}, ctx)
    assert isinstance(ex, BatchExecutor)
    one = spec(MPI, pickle.dumps(ShellPayload("nrniv -mpi model.hoc")))
    one = TaskSpec(**{**one.__dict__, "workdir": tmp_path / "a"})
    ex.write_payload(one)
    payload = pickle.loads((tmp_path / "a" / "payload.pkl").read_bytes())
    assert payload.command.startswith(prefix + " ")
    assert payload.command.endswith("nrniv -mpi model.hoc'")  # under bash -c
    plain = TaskSpec(**{**one.__dict__, "resources": Resources(), "workdir": tmp_path / "b"})
    ex.write_payload(plain)
    assert pickle.loads((tmp_path / "b" / "payload.pkl").read_bytes()).command == \
        "nrniv -mpi model.hoc"
