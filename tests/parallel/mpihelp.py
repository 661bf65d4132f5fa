"""Shared parts of the MPI tests: a 4-rank pipeline (an mpi4py reduction, a C hello world and
a shell one), the Open MPI variables a root user on a small machine needs, and a compiler."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.api import RunResult

OMPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}
"""Open MPI refuses root without these, and more ranks than cores without the last."""

HELLO_C = r"""
#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    printf("hello from C rank %d of %d\n", rank, size);
    MPI_Finalize();
    return 0;
}
"""

PIPE = '''
from corral import Resources, pipeline, shell, task

FOUR = Resources(tasks=4)

@task(resources=FOUR, launcher="{launcher}")
def reduce_ranks(n: int) -> list[int]:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    total = comm.allreduce(comm.rank * n)
    print(f"mpi4py rank {{comm.rank}} of {{comm.size}}: total {{total}}", flush=True)
    return [total, comm.size]

@pipeline
def mpi(n: int = 10, hello: str = ""):
    c = shell(hello, name="hello_c", resources=FOUR, launcher="{launcher}")
    sh = shell("echo shell rank ${{{{OMPI_COMM_WORLD_RANK:-$SLURM_PROCID}}}}",
               name="hello_sh", resources=FOUR, launcher="{launcher}")
    return reduce_ranks(n), c, sh
'''


def need_mpi() -> None:
    """Skip unless Open MPI and its compiler are installed (scripts/rig/install-system-deps.sh)."""
    if shutil.which("mpirun") is None or shutil.which("mpicc") is None:
        pytest.skip("Open MPI is not installed; run scripts/rig/install-system-deps.sh")


CLUSTER_PROBES = {"slurm": ("sbatch", ["sinfo", "-h"]), "sge": ("qsub", ["qstat", "-f"])}
"""The submit command and a probe that answers when the cluster is up (as tests/batch does)."""
FAST_POLL = {"poll_interval": 0.2, "max_poll_interval": 1.0, "marker_interval": 0.1,
             "lost_grace": 5.0, "kill_grace": 0.5}
"""Batch executor options for quick tests: short polls and grace periods."""


def require_cluster(kind: str) -> None:
    """Skip unless the rig's ``kind`` cluster answers; fail instead under
    ``CORRAL_REQUIRE_CLUSTERS=1`` (like tests/batch/conftest.py)."""
    tool, probe = CLUSTER_PROBES[kind]
    reason = None
    if shutil.which(tool) is None:
        reason = f"{tool} is not on PATH"
    else:
        try:
            proc = subprocess.run(probe, capture_output=True, text=True,  # noqa: S603 - fixed
                                  timeout=15, check=False)
            if proc.returncode != 0:
                reason = f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"{' '.join(probe)} did not answer: {exc}"
    if reason is None:
        return
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{kind} cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"{kind} cluster not available: {reason}")


def compile_hello(folder: Path) -> Path:
    """Build the C hello world with mpicc; returns the program."""
    src = folder / "hello.c"
    src.write_text(HELLO_C)
    exe = folder / "hello_mpi"
    subprocess.run(["mpicc", "-O0", "-o", str(exe), str(src)],  # noqa: S603 - fixed argv
                   check=True, timeout=120)
    return exe


def check_logs(attempts: list[dict[str, object]], workdir: Path) -> None:
    """Every task's stdout.log holds a line from each of its 4 ranks."""
    logs: dict[str, str] = {}
    for a in attempts:
        folder = Path(str(a["workdir"]))
        folder = folder if folder.is_absolute() else workdir / folder
        logs[str(a["task"])] = (folder / "stdout.log").read_text()
    for task, pattern in (("reduce_ranks", "mpi4py rank {} of 4: total 60"),
                          ("hello_c", "hello from C rank {} of 4"),
                          ("hello_sh", "shell rank {}")):
        for rank in range(4):
            assert pattern.format(rank) in logs[task], (task, logs[task])


def run_source(workdir: Path, source: str, params: dict[str, Any], **config: Any) -> RunResult:
    """Write ``source`` next to ``workdir``, load its pipeline and run it there."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir.parent / f"pipe_{uuid.uuid4().hex[:8]}.py"
    path.write_text(source)
    config.setdefault("jobs", 2)
    return corral.run(corral.load_pipeline(path), params, workdir=workdir, **config)


def attempts(workdir: Path, run_id: str) -> list[dict[str, Any]]:
    """The attempts of a run with their task's name (resources decoded)."""
    with sqlite3.connect(workdir / ".corral" / "state.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute(
            "SELECT a.*, t.name AS task FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE a.run_id = ? ORDER BY a.submitted_at", (run_id,))]
    for row in rows:
        if isinstance(row["resources"], str):
            row["resources"] = json.loads(row["resources"])
    return rows
