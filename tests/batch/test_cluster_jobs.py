"""Without ``-j`` a cluster executor is not held to the laptop's CPU count: a scatter on SLURM
and Grid Engine goes out as one array submission (issue 12)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral.engine.prepare import CLUSTER_KINDS, default_jobs

PIPE = '''
from corral import task, pipeline

@task
def one(i: int) -> int:
    return i

@task
def total(xs: list) -> int:
    return sum(xs)

@pipeline
def many(n: int = 8):
    return total(one.map(i=range(n)))
'''

PROFILE = '''
[executors.fast]
kind = "{kind}"
poll_interval = 0.3
max_poll_interval = 1.0
marker_interval = 0.2
'''

SEPARATOR = {"slurm": "_", "sge": "."}


def test_cluster_kinds_default_to_no_limit() -> None:
    assert {"slurm", "sge", "pbs", "lsf", "ssh", "dask", "tes"} <= CLUSTER_KINDS
    assert all(default_jobs(kind) == 0 for kind in CLUSTER_KINDS)
    assert default_jobs("local") >= 1


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm),
                                  pytest.param("sge", marks=pytest.mark.sge)])
def test_scatter_without_j_is_one_array_submission(
    kind: str, tmp_path: Path, harness_for: Callable[[str], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness_for(kind)  # skips (or fails with CORRAL_REQUIRE_CLUSTERS=1) without the cluster
    pipe = tmp_path / "many.py"
    pipe.write_text(PIPE)
    (tmp_path / "corral.toml").write_text(PROFILE.replace("{kind}", kind))
    argv = [sys.executable, "-m", "corral.cli.app", "run", str(pipe), "-e", "fast", "-q",
            "--workdir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / ".corral" / "state.db") as conn:
        native = [r[0] for r in conn.execute(
            "SELECT a.native_id FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "WHERE t.grp = 'one'")]
        recorded = conn.execute("SELECT executor FROM runs").fetchone()[0]
    assert len(native) == 8 and all(native), native
    assert len({n.split(SEPARATOR[kind])[0] for n in native}) == 1, native
    assert '"jobs": 0' in recorded
