"""``corral.Executor`` on the real test clusters, SLURM and Grid Engine, at the issue's scale.

One module-scoped pair of sessions per scheduler (``sessions``): a map of 200 calls, then the
same map again in a new executor plus one call that raises. Submissions are counted with logging
wrappers of ``sbatch`` and ``qsub`` first on ``PATH`` (as tests/detached does). Cancelling is
checked on the scheduler itself, with ``squeue``/``qstat``.

Skips when a cluster does not answer, unless ``CORRAL_REQUIRE_CLUSTERS=1`` (then it fails).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.executors.batch.sge import parse_qstat_xml
from corral.interactive import RemoteError
from corral.states import RunState
from corral.store import Store

FAST = {"poll_interval": 0.3, "max_poll_interval": 1.0, "marker_interval": 0.2}
N = 200
PROBES = {"slurm": ("sbatch", ["sinfo", "-h"]), "sge": ("qsub", ["qstat", "-f"])}
SCHEDULERS = [pytest.param("slurm", marks=pytest.mark.slurm),
              pytest.param("sge", marks=pytest.mark.sge)]
WRAPPER = """#!/bin/bash
printf '%s\\n' "$*" >> {log}
exec {real} "$@"
"""


def cube(x: int) -> int:
    return x * x * x


def explode(x: int) -> int:
    raise ValueError(f"no good: {x}")


EXPLODE_LINE = explode.__code__.co_firstlineno + 1


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def require_cluster(sched: str) -> None:
    tool, probe = PROBES[sched]
    reason = None
    if shutil.which(tool) is None:
        reason = f"{tool} is not on PATH"
    else:
        try:
            proc = subprocess.run(probe, capture_output=True, text=True,  # noqa: S603
                                  timeout=15)
            if proc.returncode != 0:
                reason = f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"{' '.join(probe)} did not answer: {exc}"
    if reason is None:
        return
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{sched} cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"{sched} cluster not available: {reason}")


def _wrap_submitters(bindir: Path, log: Path) -> None:
    bindir.mkdir()
    log.touch()
    for name in ("sbatch", "qsub"):
        real = shutil.which(name)
        if real is not None:
            (bindir / name).write_text(WRAPPER.format(log=log, real=real))
            (bindir / name).chmod(0o755)


def _count(log: Path) -> int:
    return len(log.read_text().splitlines())


@dataclass
class Sessions:
    """What the two sessions of one scheduler saw."""

    sched: str
    wd: Path
    first: list[Any]
    first_run: str
    first_submissions: int
    second: list[Any]
    second_run: str
    second_submissions: int
    error: BaseException | None


@pytest.fixture(scope="module", params=SCHEDULERS)
def sessions(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sessions]:
    sched: str = request.param
    require_cluster(sched)
    root = tmp_path_factory.mktemp(f"interactive-{sched}")
    os.chmod(root, 0o755)  # the batch jobs read and write the attempt directories
    wd, log = root / "wd", root / "submissions.log"
    wd.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        _wrap_submitters(root / "bin", log)
        mp.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
        with corral.Executor(sched, workdir=wd, executor_options=FAST) as ex:
            first = list(ex.map(cube, range(N)))
            first_run = ex.run_id
        first_submissions = _count(log)
        error: BaseException | None = None
        with corral.Executor(sched, workdir=wd, executor_options=FAST) as ex:
            second = list(ex.map(cube, range(N)))
            second_submissions = _count(log) - first_submissions
            try:
                ex.submit(explode, 3).result(timeout=120)
            except BaseException as exc:
                error = exc
            second_run = ex.run_id
    yield Sessions(sched, wd, first, first_run, first_submissions, second, second_run,
                   second_submissions, error)


def test_a_map_of_200_is_one_submission_with_values_in_order(sessions: Sessions) -> None:
    assert sessions.first == [x ** 3 for x in range(N)]
    assert sessions.first_submissions == 1


def test_the_run_is_listed_with_its_tasks_and_metrics(sessions: Sessions) -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "corral", "runs", "--json", "-C", str(sessions.wd)],
        capture_output=True, text=True, timeout=60, check=True)
    row = next(r for r in json.loads(proc.stdout) if r["id"] == sessions.first_run)
    assert row["state"] == "succeeded" and row["n_tasks"] == N
    assert row["executor"]["kind"] == sessions.sched
    store = Store.open(sessions.wd)
    try:
        tasks = store.tasks(sessions.first_run)
        attempts = store.attempts(sessions.first_run)
    finally:
        store.close()
    assert len(tasks) == N and {t["state"] for t in tasks} == {"succeeded"}
    assert len(attempts) == N
    assert all(a["wall"] is not None and a["peak_rss"] for a in attempts)
    # one array job: every native id names the same job
    sep = "_" if sessions.sched == "slurm" else "."
    assert len({str(a["native_id"]).split(sep)[0] for a in attempts}) == 1


def test_rerunning_is_all_cache_hits(sessions: Sessions) -> None:
    assert sessions.second == [x ** 3 for x in range(N)]
    assert sessions.second_submissions == 0
    store = Store.open(sessions.wd)
    try:
        tasks = [t for t in store.tasks(sessions.second_run) if t["name"].startswith("cube")]
    finally:
        store.close()
    assert len(tasks) == N and all(t["cached"] for t in tasks)


def test_an_exception_reraises_with_the_users_file_and_line(sessions: Sessions) -> None:
    assert isinstance(sessions.error, RemoteError), sessions.error
    text = str(sessions.error)
    assert "ValueError: no good: 3" in text
    assert f'File "{__file__}", line {EXPLODE_LINE}, in explode' in text
    assert corral.attach(sessions.second_run, sessions.wd).state is RunState.FAILED


def _listed(sched: str, natives: set[str]) -> set[str]:
    """Which of these array elements the scheduler still lists (not finished)."""
    if sched == "slurm":
        jobs = sorted({n.split("_")[0] for n in natives})
        proc = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(jobs),  # noqa: S603
                               "-o", "%i %T"], capture_output=True, text=True, timeout=30)
        rows = [line.split() for line in proc.stdout.splitlines() if line.strip()]
        return {r[0] for r in rows if r[1] != "COMPLETING"} & natives
    proc = subprocess.run(["qstat", "-xml"], capture_output=True, text=True,
                          timeout=30)
    return set(parse_qstat_xml(proc.stdout)) & natives


def _until(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
    return True


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_cancel_and_shutdown_cancel_the_cluster_jobs(sched: str, tmp_path: Path) -> None:
    require_cluster(sched)
    os.chmod(tmp_path, 0o755)
    ex = corral.Executor(sched, workdir=tmp_path, cache=False, executor_options=FAST)
    futures = [ex.submit(nap, 120 + i) for i in range(3)]
    store = Store.open(tmp_path)
    try:
        def natives() -> dict[str, str]:
            return {a["id"]: str(a["native_id"]) for a in store.attempts(ex.run_id)
                    if a["native_id"]}

        assert _until(lambda: len(natives()) == 3, 60), natives()
        ids = set(natives().values())
        assert _until(lambda: _listed(sched, ids) == ids, 30), _listed(sched, ids)
        first = natives()[f"{ex.run_id}.0.1"]  # nap[0]'s first attempt
        assert futures[0].cancel()
        assert _until(lambda: first not in _listed(sched, ids), 30), _listed(sched, ids)
        assert _listed(sched, ids) == ids - {first}  # the others still queued or running
        ex.shutdown(wait=True, cancel_futures=True)
        assert all(f.cancelled() for f in futures)
        assert _until(lambda: not _listed(sched, ids), 30), _listed(sched, ids)
        assert {t["state"] for t in store.tasks(ex.run_id)} == {"cancelled"}
        assert store.get_run(ex.run_id)["state"] == "cancelled"
    finally:
        store.close()


@pytest.mark.slurm
def test_submits_close_together_are_one_sbatch(tmp_path: Path) -> None:
    require_cluster("slurm")
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
