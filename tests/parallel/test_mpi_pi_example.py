"""examples/mpi_pi on the local executor: 4 chunks of a seeked file, each integrated by a task of
4 MPI ranks (mpirun -np 4); the sum is pi, every rank's line is in its task's log, and a second
run reuses every task."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import corral

from .mpihelp import OMPI_ENV, attempts, need_mpi

pytestmark = pytest.mark.timeout(120)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mpi_pi" / "pipeline.py"


def test_mpi_pi_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_mpi()
    for k, v in OMPI_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    params = {"intervals": 400, "chunks": 4, "steps": 50, "path": str(tmp_path / "iv.txt")}
    res = corral.run(corral.load_pipeline(EXAMPLE), params, workdir=tmp_path, jobs=4)
    assert res.ok, res.errors
    assert abs(res.value - math.pi) < 1e-9
    rows = [r for r in attempts(tmp_path, res.run_id) if r["task"].startswith("integrate")]
    assert len(rows) == 4
    for row in rows:
        folder = Path(str(row["workdir"]))
        log = (folder if folder.is_absolute() else tmp_path / folder) / "stdout.log"
        text = log.read_text()
        for rank in range(4):
            assert f"rank {rank} of 4:" in text, text
    again = corral.run(corral.load_pipeline(EXAMPLE), params, workdir=tmp_path, jobs=4)
    assert again.ok and again.value == res.value
    assert attempts(tmp_path, again.run_id) == []  # every task from the cache
