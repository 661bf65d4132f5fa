"""A 4-rank MPI task on the rig's real clusters, through corral.run with launcher="mpi".

SLURM: the job asks for ``--ntasks=4`` and the worker starts the ranks with ``srun``; the rig's
``MpiDefault=pmix`` wires them (Debian's Open MPI has no PMI2 client: under ``--mpi=pmi2`` or
``none`` every rank fails in MPI_Init, "OMPI was not built with SLURM's PMI support").
Grid Engine: the job asks for ``-pe mpi 4`` and ``mpirun -np 4`` reads the slots from
``$PE_HOSTFILE`` (Open MPI's gridengine support). Each rank's output is in the task's stdout.log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .mpihelp import (
    FAST_POLL,
    OMPI_ENV,
    PIPE,
    attempts,
    check_logs,
    compile_hello,
    need_mpi,
    require_cluster,
    run_source,
)

pytestmark = pytest.mark.timeout(120)

CLUSTERS = [pytest.param("slurm", marks=pytest.mark.slurm, id="slurm"),
            pytest.param("sge", marks=pytest.mark.sge, id="sge")]
RANK_VARIABLE = {"slurm": "SLURM_PROCID", "sge": "OMPI_COMM_WORLD_RANK"}
"""What tells a rank its number under the launcher each executor resolves "mpi" to."""

FAILING = '''
import os
from corral import Resources, pipeline, task

@task(resources=Resources(tasks=2), launcher="mpi")
def bad() -> int:
    if os.environ.get("{var}") == "1":
        raise ValueError("rank one broke")
    return 1

@pipeline
def p():
    return bad()
'''


@pytest.mark.parametrize("kind", CLUSTERS)
def test_four_ranks_on_cluster(kind: str, tmp_path: Path) -> None:
    need_mpi()
    require_cluster(kind)
    exe = compile_hello(tmp_path)  # on the shared file system: the job runs it where it is
    work = tmp_path / "work"
    res = run_source(work, PIPE.format(launcher="mpi"), {"n": 10, "hello": str(exe)},
                     executor=kind, executor_options={**FAST_POLL, "env": OMPI_ENV})
    assert res.ok, res.errors
    assert res.value[0] == [60, 4]  # rank 0's value: the ranks formed one world of 4
    rows = attempts(work, res.run_id)
    assert len(rows) == 3 and {r["resources"]["tasks"] for r in rows} == {4}
    check_logs(rows, work)
    # each rank numbered by its launcher: srun on SLURM, mpirun on Grid Engine
    sh = next(r for r in rows if r["task"] == "hello_sh")
    folder = Path(str(sh["workdir"]))
    folder = folder if folder.is_absolute() else work / folder
    script = "\n".join(p.read_text() for p in folder.parent.rglob("*.sh")
                       if p.is_file())
    directive = {"slurm": "#SBATCH --ntasks=4", "sge": "#$ -pe mpi 4"}[kind]
    assert directive in script, script[:2000]


@pytest.mark.parametrize("kind", CLUSTERS)
def test_failing_rank_fails_on_cluster(kind: str, tmp_path: Path) -> None:
    need_mpi()
    require_cluster(kind)
    res = run_source(tmp_path / "work", FAILING.format(var=RANK_VARIABLE[kind]), {},
                     executor=kind, executor_options={**FAST_POLL, "env": OMPI_ENV})
    assert not res.ok
    assert "ranks exited with status" in " ".join(res.errors), res.errors
