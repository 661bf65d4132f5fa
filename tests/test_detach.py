"""Detached mode and ``corral export`` on the real local SLURM cluster.

Skipped when ``sbatch`` is missing or the cluster does not answer, unless
``CORRAL_REQUIRE_CLUSTERS=1`` (then they fail).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.api import RunConfig
from corral.engine.detach import load_state, reconcile, submit_detached
from corral.errors import UsageError
from corral.export import export_run, export_script
from corral.store import Store

PIPE = '''
from pathlib import Path
from corral import each, pipeline, shell, task


@task
def square(x: int, offset_file: Path) -> int:
    return x * x + int(Path(offset_file).read_text())


@task
def total(values: list) -> int:
    return sum(values)


@task
def numbers() -> list:
    return [1, 2]


@task
def boom(x: int) -> int:
    raise ValueError(f"bad value {x}")


@task
def after(x: int) -> int:
    return x + 1


@pipeline
def chain():
    off = shell("echo 10 > {output}", outputs="offset.txt", name="offset")
    sq = square.map([1, 2, 3], offset_file=off)
    t = total(sq)
    cp = shell("cat {input} > {output}", inputs="offset.txt", outputs="copy.txt", name="copy")
    return t, cp


@task
def nap(x: int) -> int:
    import time
    time.sleep(60)
    return x


@pipeline
def sleepy():
    return total(nap.map([1, 2]))


@pipeline
def broken():
    return after(after(boom(1)))


@pipeline
def dynamic():
    return total(square.map(x=each(numbers()), offset_file=Path("x")))
'''


def _cluster() -> None:
    reason = None
    if shutil.which("sbatch") is None:
        reason = "sbatch is not on PATH"
    else:
        proc = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=15)
        if proc.returncode != 0:
            reason = f"sinfo failed: {proc.stderr.strip()[-200:]}"
    if reason:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"SLURM required but unavailable: {reason}")
        pytest.skip(reason)


def _load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "pipe_detach.py"
    if not path.exists():
        path.write_text(PIPE)
    return corral.load_pipeline(path, name)


def _cfg(tmp_path: Path, executor: str = "slurm") -> RunConfig:
    return RunConfig(executor=executor, workdir=tmp_path, new=True,
                     executor_options={"accounting": "none"} if executor == "slurm" else {})


def _wait(store: Store, run_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.time() + timeout
    while True:
        summary = reconcile(store, run_id)
        if summary["state"] in ("succeeded", "failed", "cancelled"):
            return summary
        if time.time() > deadline:
            raise AssertionError(f"run {run_id} did not end in {timeout}s: {summary}")
        time.sleep(1.0)


def _values(tmp_path: Path, run_id: str) -> dict[str, Any]:
    handle = corral.Client(tmp_path).run(run_id)
    return {t["name"]: t["state"] for t in handle.tasks()}


def test_refuses_dynamic_scatter_and_non_batch_executor(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="each"):
        submit_detached(_load(tmp_path, "dynamic"), {}, _cfg(tmp_path))
    with pytest.raises(UsageError, match="batch"):
        submit_detached(_load(tmp_path, "chain"), {}, _cfg(tmp_path, "local"))


@pytest.mark.slurm
def test_detached_chain_on_slurm(tmp_path: Path) -> None:
    _cluster()
    started = time.time()
    run_id = submit_detached(_load(tmp_path, "chain"), {}, _cfg(tmp_path))
    assert time.time() - started < 30
    store = Store.open(tmp_path)
    run = store.get_run(run_id)
    assert run["state"] == "detached"
    assert not store.engine_alive(run)  # nothing keeps running here
    attempts = store.attempts(run_id)
    assert len(attempts) == 6 and all(a["native_id"] for a in attempts)
    # total waits for the three squares with afterok
    total_job = next(a for a in attempts if a["id"].split(".")[1] == str(
        next(t["idx"] for t in store.tasks(run_id) if t["name"] == "total")))
    script = Path(total_job["workdir"], "job.sh")
    assert script.is_file()
    state = load_state(store, run_id)
    assert state is not None
    by_name = {t.name: t for t in state.tasks.values()}
    squares = {by_name[f"square[{i}]"].idx for i in range(3)}
    assert set(by_name["total"].deps) == squares
    assert all(by_name[f"square[{i}]"].deps == [by_name["offset"].idx] for i in range(3))
    # while the chain runs, SLURM holds total on afterok of the squares' jobs
    dep = subprocess.run(["squeue", "-h", "-j", total_job["native_id"], "-o", "%E"],  # noqa: S603
                         capture_output=True, text=True).stdout.strip()
    if dep and dep != "(null)":
        assert dep.startswith("afterok:"), dep
    summary = _wait(store, run_id)
    assert summary["state"] == "succeeded", (summary, _values(tmp_path, run_id))
    assert summary["done"] == 6
    handle = corral.Client(tmp_path).run(run_id)
    assert handle.task_result("total") == 1 + 4 + 9 + 30
    assert handle.task_result("square[2]") == 19
    assert (tmp_path / "copy.txt").read_text().strip() == "10"
    assert all(a["state"] == "succeeded" for a in store.attempts(run_id))
    # a second run reuses every result from the cache: nothing to submit
    again = submit_detached(_load(tmp_path, "chain"), {}, _cfg(tmp_path))
    assert store.get_run(again)["state"] == "succeeded"


@pytest.mark.slurm
def test_detached_failure_skips_downstream(tmp_path: Path) -> None:
    _cluster()
    run_id = submit_detached(_load(tmp_path, "broken"), {}, _cfg(tmp_path))
    store = Store.open(tmp_path)
    summary = _wait(store, run_id)
    assert summary["state"] == "failed"
    states = _values(tmp_path, run_id)
    assert states["boom"] == "failed"
    assert sorted(s for n, s in states.items() if n != "boom") == ["skipped", "skipped"]


def test_export_script_text(tmp_path: Path) -> None:
    dest = export_script(_load(tmp_path, "chain"), {}, _cfg(tmp_path, "local"),
                         tmp_path / "pipeline.sh")
    text = dest.read_text()
    assert text.startswith("#!/usr/bin/env bash\n# Pipeline 'chain'")
    assert "--dependency=afterok:$jid_" in text and "--kill-on-invalid-dep=yes" in text
    assert text.count("$(sbatch --parsable") == 6
    assert subprocess.run(["bash", "-n", str(dest)]).returncode == 0  # noqa: S603
    jobs = sorted((tmp_path / "pipeline.jobs").iterdir())
    assert len(jobs) == 6
    assert all("-m corral.worker" in j.read_text() for j in jobs)
    sge = export_script(_load(tmp_path, "chain"), {}, _cfg(tmp_path, "local"),
                        tmp_path / "sge" / "pipeline.sh", fmt="sge")
    assert "qsub -terse -hold_jid $jid_" in sge.read_text()
    assert subprocess.run(["bash", "-n", str(sge)]).returncode == 0  # noqa: S603


def test_export_run_by_id(tmp_path: Path) -> None:
    pipe = _load(tmp_path, "chain")
    cfg = _cfg(tmp_path, "local")
    cfg.source = str(tmp_path / "pipe_detach.py")
    first = Path(export_script(pipe, {}, cfg, tmp_path / "a.sh"))
    run_id = Store.open(tmp_path).list_runs(1)[0]["id"]
    second = export_run(tmp_path, run_id, tmp_path / "b.sh")
    assert second.read_text().count("$(sbatch") == first.read_text().count("$(sbatch") == 6
    # a run of a pipeline defined in code (source "module:name") has no file to load again
    in_code = _load(tmp_path, "broken")
    in_code.source_file = None
    export_script(in_code, {}, _cfg(tmp_path, "local"), tmp_path / "d.sh")
    api_run = Store.open(tmp_path).list_runs(1)[0]["id"]
    with pytest.raises(UsageError, match="not a pipeline file"):
        export_run(tmp_path, api_run, tmp_path / "c.sh")


@pytest.mark.slurm
def test_exported_script_runs_on_slurm(tmp_path: Path) -> None:
    _cluster()
    dest = export_script(_load(tmp_path, "chain"), {}, _cfg(tmp_path), tmp_path / "pipeline.sh")
    out = subprocess.run(["bash", str(dest)], capture_output=True, text=True,  # noqa: S603
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": job ") == 6
    store = Store.open(tmp_path)
    run_id = store.list_runs(1)[0]["id"]
    summary = _wait(store, run_id)
    assert summary["state"] == "succeeded", summary
    assert corral.Client(tmp_path).run(run_id).task_result("total") == 44
    assert (tmp_path / "copy.txt").read_text().strip() == "10"


@pytest.mark.slurm
def test_cancel_detached_run_cancels_its_jobs(tmp_path: Path) -> None:
    _cluster()
    run_id = submit_detached(_load(tmp_path, "sleepy"), {}, _cfg(tmp_path))
    store = Store.open(tmp_path)
    natives = [a["native_id"] for a in store.attempts(run_id)]
    assert len(natives) == 3
    out = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "corral.cli.app", "cancel", run_id, "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "3 cluster jobs" in out.stdout
    deadline = time.time() + 30
    jobs = sorted({n.split("_")[0] for n in natives})
    while time.time() < deadline:
        q = subprocess.run(["squeue", "-h", "-j", ",".join(jobs), "-o", "%i %T"],  # noqa: S603
                           capture_output=True, text=True, check=False)
        if not [line for line in q.stdout.splitlines() if "COMPLETING" not in line]:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"jobs still queued after cancel: {q.stdout}")
    assert store.get_run(run_id)["state"] == "cancelled"
    assert {t["state"] for t in store.tasks(run_id)} == {"cancelled"}
