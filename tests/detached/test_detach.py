"""Detached mode and ``corral export`` on the real local SLURM and Grid Engine clusters.

The cluster tests run once per scheduler (``sched`` is ``slurm`` or ``sge``). They are skipped
when the scheduler's tools are missing or the cluster does not answer, unless
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
from corral.engine.detached import load_state, reconcile, submit_detached
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


PROBES = {"slurm": ("sbatch", ["sinfo", "-h"]), "sge": ("qsub", ["qstat", "-f"])}
SCHEDULERS = [pytest.param("slurm", marks=pytest.mark.slurm),
              pytest.param("sge", marks=pytest.mark.sge)]


def _cluster(sched: str = "slurm") -> None:
    tool, probe = PROBES[sched]
    reason = None
    if shutil.which(tool) is None:
        reason = f"{tool} is not on PATH"
    else:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=15)  # noqa: S603
        if proc.returncode != 0:
            reason = f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}"
    if reason:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"{sched} required but unavailable: {reason}")
        pytest.skip(reason)


@pytest.fixture(params=SCHEDULERS)
def sched(request: pytest.FixtureRequest) -> str:
    """A real scheduler to submit to (``slurm`` or ``sge``), skipped when it does not answer."""
    kind: str = request.param
    _cluster(kind)
    return kind


def queued(sched: str, job_ids: list[str]) -> dict[str, str]:
    """Which of these jobs the scheduler still lists, with their state (``PD``, ``hqw``...)."""
    if sched == "slurm":
        argv = ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"]
    else:
        argv = ["qstat"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout  # noqa: S603
    rows = [line.split() for line in out.splitlines() if line.strip()]
    if sched == "slurm":
        return {r[0].split("_")[0]: r[1] for r in rows if r[1] != "COMPLETING"}
    # qstat: job-ID prior name user state ...
    return {r[0]: r[4] for r in rows if r[0] in job_ids}


def dependency_of(sched: str, job_id: str) -> str:
    """The dependency the scheduler holds a pending job on ("" once it is gone)."""
    if sched == "slurm":
        dep = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%E"],  # noqa: S603
                             capture_output=True, text=True).stdout.strip()
        return "" if dep == "(null)" else dep
    out = subprocess.run(["qstat", "-j", job_id], capture_output=True,  # noqa: S603
                         text=True).stdout
    lines = [x for x in out.splitlines() if x.startswith("jid_predecessor_list")]
    return lines[0].split(":", 1)[1].strip() if lines else ""


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


def test_detached_chain(tmp_path: Path, sched: str) -> None:
    started = time.time()
    run_id = submit_detached(_load(tmp_path, "chain"), {}, _cfg(tmp_path, sched))
    assert time.time() - started < 30
    store = Store.open(tmp_path)
    run = store.get_run(run_id)
    assert run["state"] == "detached"
    assert not store.engine_alive(run)  # nothing keeps running here
    attempts = store.attempts(run_id)
    assert len(attempts) == 6 and all(a["native_id"] for a in attempts)
    assert {a["executor"] for a in attempts} == {sched}
    # total waits for the three squares with afterok / hold_jid
    total_job = next(a for a in attempts if a["id"].split(".")[1] == str(
        next(t["idx"] for t in store.tasks(run_id) if t["name"] == "total")))
    script = Path(total_job["workdir"] or ".", "job.sh")
    assert script.is_file()
    state = load_state(store, run_id)
    assert state is not None
    by_name = {t.name: t for t in state.tasks.values()}
    squares = {by_name[f"square[{i}]"].idx for i in range(3)}
    assert set(by_name["total"].deps) == squares
    assert all(by_name[f"square[{i}]"].deps == [by_name["offset"].idx] for i in range(3))
    # the squares are one array job, element i running square[i - 1]
    square_elems = [by_name[f"square[{i}]"].native_id or "" for i in range(3)]
    sep = "_" if sched == "slurm" else "."
    array_id = square_elems[0].split(sep)[0]
    assert square_elems == [f"{array_id}{sep}{i}" for i in (1, 2, 3)]
    # while the chain runs, the scheduler holds total on the squares' array job
    dep = dependency_of(sched, total_job["native_id"] or "")
    if dep and sched == "slurm":
        assert dep.startswith(f"afterok:{array_id}"), dep
    elif dep:
        assert dep == array_id, dep
    if sched == "sge":  # the script checks the squares' markers before running the worker
        text = script.read_text()
        assert text.count('grep -qs \'^{"outcome": "succeeded"\'') == 3, text
    summary = _wait(store, run_id)
    assert summary["state"] == "succeeded", (summary, _values(tmp_path, run_id))
    assert summary["done"] == 6
    handle = corral.Client(tmp_path).run(run_id)
    assert handle.task_result("total") == 1 + 4 + 9 + 30
    assert handle.task_result("square[2]") == 19
    assert (tmp_path / "copy.txt").read_text().strip() == "10"
    assert all(a["state"] == "succeeded" for a in store.attempts(run_id))
    # the wall time of every attempt, from its exit marker, as attached runs record it
    assert all(a["wall"] is not None and a["wall"] >= 0 for a in store.attempts(run_id))
    # a second run reuses every result from the cache: nothing to submit
    again = submit_detached(_load(tmp_path, "chain"), {}, _cfg(tmp_path, sched))
    assert store.get_run(again)["state"] == "succeeded"


def _drained(sched: str, job_ids: list[str], timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while queued(sched, job_ids):
        if time.time() > deadline:
            pytest.fail(f"jobs still queued: {queued(sched, job_ids)}")
        time.sleep(0.5)


def test_detached_failure_skips_downstream(tmp_path: Path, sched: str) -> None:
    run_id = submit_detached(_load(tmp_path, "broken"), {}, _cfg(tmp_path, sched))
    store = Store.open(tmp_path)
    # nobody reconciles meanwhile: the scheduler alone must not run the downstream tasks
    _drained(sched, [a["native_id"] or "" for a in store.attempts(run_id)])
    state = load_state(store, run_id)
    assert state is not None
    downstream = [t for t in state.tasks.values() if t.name != "boom"]
    for t in downstream:
        assert not Path(t.workdir, "exit.json").exists()  # the worker never ran
        if sched == "sge":  # released by -hold_jid, the job refused to run the task
            err = Path(t.workdir, "stderr.log").read_text()
            assert "not running this task" in err, err
    summary = _wait(store, run_id)
    assert summary["state"] == "failed"
    states = _values(tmp_path, run_id)
    assert states["boom"] == "failed"
    assert sorted(s for n, s in states.items() if n != "boom") == ["skipped", "skipped"]
    assert summary["skipped"] == 2 and summary["failed"] == 1


def test_export_script_text(tmp_path: Path) -> None:
    dest = export_script(_load(tmp_path, "chain"), {}, _cfg(tmp_path, "local"),
                         tmp_path / "pipeline.sh")
    text = dest.read_text()
    assert text.startswith("#!/usr/bin/env bash\n# Pipeline 'chain'")
    assert "--dependency=afterok:$jid_" in text and "--kill-on-invalid-dep=yes" in text
    assert text.count("$(sbatch --parsable") == 4  # offset, copy, total, squares' array
    assert "# square: 3 tasks (square[0] .. square[2]) as one array job" in text
    assert subprocess.run(["bash", "-n", str(dest)]).returncode == 0  # noqa: S603
    jobs = sorted((tmp_path / "pipeline.jobs").iterdir())
    assert [j.name for j in jobs] == ["copy.sh", "offset.sh", "square.sh", "total.sh"]
    assert "#SBATCH --array=1-3%3" in (tmp_path / "pipeline.jobs" / "square.sh").read_text()
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
    assert second.read_text().count("$(sbatch") == first.read_text().count("$(sbatch") == 4
    # a run of a pipeline defined in code (source "module:name") has no file to load again
    in_code = _load(tmp_path, "broken")
    in_code.source_file = None
    export_script(in_code, {}, _cfg(tmp_path, "local"), tmp_path / "d.sh")
    api_run = Store.open(tmp_path).list_runs(1)[0]["id"]
    with pytest.raises(UsageError, match="not a pipeline file"):
        export_run(tmp_path, api_run, tmp_path / "c.sh")


def test_exported_script_runs(tmp_path: Path, sched: str) -> None:
    fmt = {"slurm": "sbatch", "sge": "sge"}[sched]
    dest = export_script(_load(tmp_path, "chain"), {}, _cfg(tmp_path, sched),
                         tmp_path / "pipeline.sh", fmt=fmt)
    out = subprocess.run(["bash", str(dest)], capture_output=True, text=True,  # noqa: S603
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": job ") == 4  # the three squares are one array job
    job_ids = [line.rsplit(" ", 1)[1] for line in out.stdout.splitlines() if ": job " in line]
    assert all(j.isdigit() for j in job_ids), out.stdout
    store = Store.open(tmp_path)
    run_id = store.list_runs(1)[0]["id"]
    summary = _wait(store, run_id)
    assert summary["state"] == "succeeded", summary
    assert corral.Client(tmp_path).run(run_id).task_result("total") == 44
    assert (tmp_path / "copy.txt").read_text().strip() == "10"


def test_cancel_detached_run_cancels_its_jobs(tmp_path: Path, sched: str) -> None:
    run_id = submit_detached(_load(tmp_path, "sleepy"), {}, _cfg(tmp_path, sched))
    store = Store.open(tmp_path)
    natives = [a["native_id"] for a in store.attempts(run_id)]
    assert len(natives) == 3
    jobs = sorted({(n or "").split("_")[0].split(".")[0] for n in natives})
    assert queued(sched, jobs)
    out = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "corral.cli.app", "cancel", run_id, "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "3 cluster jobs" in out.stdout
    _drained(sched, jobs, timeout=30)
    assert store.get_run(run_id)["state"] == "cancelled"
    assert {t["state"] for t in store.tasks(run_id)} == {"cancelled"}
    # total never ran: its job was deleted while held, not released by the deleted naps
    total = next(t for t in load_state(store, run_id).tasks.values()  # type: ignore[union-attr]
                 if t.name == "total")
    assert not Path(total.workdir, "exit.json").exists()
