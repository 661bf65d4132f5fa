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


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _squeue(job: str) -> str:
    proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"],  # noqa: S603
                          capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


@pytest.mark.slurm
def test_shutdown_cancel_futures_cancels_the_cluster_jobs(tmp_path: Path) -> None:
    _require_slurm()
    ex = corral.Executor("slurm", workdir=tmp_path, cache=False, executor_options=FAST)
    futures = [ex.submit(nap, 120 + i) for i in range(3)]
    store = Store.open(tmp_path)
    try:
        deadline = time.monotonic() + 60
        natives: set[str] = set()
        while time.monotonic() < deadline and len(natives) < 3:
            natives = {str(a["native_id"]) for a in store.attempts(ex.run_id) if a["native_id"]}
            time.sleep(0.3)
        assert len(natives) == 3, natives
        job = next(iter(natives)).split("_")[0]
        assert _squeue(job)
        ex.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() for f in futures)
        deadline = time.monotonic() + 30
        while _squeue(job) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _squeue(job), _squeue(job)
        assert {t["state"] for t in store.tasks(ex.run_id)} == {"cancelled"}
        assert store.get_run(ex.run_id)["state"] == "cancelled"
    finally:
        store.close()
