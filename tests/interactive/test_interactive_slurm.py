"""``corral.Executor("slurm")`` on the real test cluster: a map is one array job (one sbatch).

Skips when ``sbatch`` is missing or the cluster does not answer, unless
``CORRAL_REQUIRE_CLUSTERS=1`` (then it fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import corral
from corral.store import Store

FAST = {"poll_interval": 0.3, "max_poll_interval": 1.0, "marker_interval": 0.2}


def cube(x: int) -> int:
    return x * x * x


def _require_slurm() -> None:
    reason = None
    if shutil.which("sbatch") is None:
        reason = "sbatch is not on PATH"
    else:
        try:
            proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True,
                                  timeout=15)
            if proc.returncode != 0:
                reason = f"sinfo failed: {proc.stderr.strip()[-200:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"sinfo did not answer: {exc}"
    if reason is None:
        return
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"slurm cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"slurm cluster not available: {reason}")


@pytest.mark.slurm
def test_a_map_of_20_is_one_sbatch(tmp_path: Path) -> None:
    _require_slurm()
    with corral.Executor("slurm", workdir=tmp_path, executor_options=FAST) as ex:
        assert list(ex.map(cube, range(20))) == [x ** 3 for x in range(20)]
        run_id = ex.run_id
    store = Store.open(tmp_path)
    try:
        natives = {str(a["native_id"]) for a in store.attempts(run_id)}
        tasks = store.tasks(run_id)
    finally:
        store.close()
    assert len(tasks) == 20 and {t["state"] for t in tasks} == {"succeeded"}
    assert len(natives) == 20 and len({n.split("_")[0] for n in natives}) == 1, natives


@pytest.mark.slurm
def test_submits_close_together_are_one_sbatch(tmp_path: Path) -> None:
    _require_slurm()
    with corral.Executor("slurm", workdir=tmp_path, executor_options=FAST) as ex:
        futures = []
        for x in range(10):  # a loop that does a little work between its calls
            futures.append(ex.submit(cube, x))
            time.sleep(0.02)
        assert [f.result(timeout=120) for f in futures] == [x ** 3 for x in range(10)]
        run_id = ex.run_id
    store = Store.open(tmp_path)
    try:
        natives = {str(a["native_id"]) for a in store.attempts(run_id)}
    finally:
        store.close()
    assert len(natives) == 10 and len({n.split("_")[0] for n in natives}) == 1, natives
