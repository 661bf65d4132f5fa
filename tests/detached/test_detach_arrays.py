"""Scatters as array jobs in detached mode (issue 19), on the real local SLURM and Grid Engine.

Submissions are counted with logging wrappers of ``sbatch`` and ``qsub`` first on ``PATH`` (as
``bench/slurm.py`` counts SLURM commands): a 1,000-element map plus its gather is two
submissions, and a failed element's retry resubmits that element alone.
"""

from __future__ import annotations

import os
import re
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
from corral.export import export_script
from corral.store import Store
from examples.test_datapipe import EXAMPLE, SHARDS, _check_outputs, server  # noqa: F401

from .test_detach import _drained, _wait, sched  # noqa: F401 - sched is a fixture

WIDE = '''
import os
import time
from corral import pipeline, task


@task
def square(x: int) -> int:
    return x * x


@task(retries=1)
def flaky_retried(x: int) -> int:
    if x in (2, 4) and os.environ["CORRAL_ATTEMPT"] == "1":
        # fail together: an element started late on a busy machine would be seen failed by
        # a later reconcile, and retried in an array of its own
        open(f"failing-{x}", "w").close()
        deadline = time.time() + 60
        while not all(os.path.exists(f"failing-{y}") for y in (2, 4)) and time.time() < deadline:
            time.sleep(0.05)
        raise RuntimeError(f"element {x} fails on attempt 1")
    return x * 10


@task
def total(values: list) -> int:
    return sum(values)


@task
def double(x: int) -> int:
    return 2 * x


@task
def fragile(x: int) -> int:
    if x == 2:
        raise ValueError("element 2 fails")
    return x


@pipeline
def chained():
    return total(double.map(square.map([1, 2, 3])))


@pipeline
def chained_failing():
    return double.map(fragile.map([1, 2, 3]))


@pipeline
def wide(n: int = 1000):
    return total(square.map(list(range(n))))


@pipeline
def one_flaky():
    return total(flaky_retried.map([1, 2, 3, 4]))
'''

WRAPPER = """#!/bin/bash
printf '%s\\n' "$*" >> {log}
exec {real} "$@"
"""


@pytest.fixture
def submissions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A log of every ``sbatch``/``qsub`` call (one line each, its arguments)."""
    bindir, log = tmp_path / "wrap-bin", tmp_path / "submissions.log"
    bindir.mkdir()
    log.touch()
    for name in ("sbatch", "qsub"):
        real = shutil.which(name)
        if real is not None:
            (bindir / name).write_text(WRAPPER.format(log=log, real=real))
            (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines()


def _load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "pipe_wide.py"
    if not path.exists():
        path.write_text(WIDE)
    return corral.load_pipeline(path, name)


def _cfg(tmp_path: Path, sched: str) -> RunConfig:
    return RunConfig(executor=sched, workdir=tmp_path, new=True,
                     executor_options={"accounting": "none"} if sched == "slurm" else {})


def _attempt_states(store: Store, run_id: str) -> dict[str, list[str]]:
    names = {t["id"]: t["name"] for t in store.tasks(run_id)}
    out: dict[str, list[str]] = {}
    for a in store.attempts(run_id):
        out.setdefault(names[a["task_id"]], []).append(a["state"])
    return out


def _submit_thousand(tmp_path: Path, sched: str, submissions: Path) -> tuple[str, Any, str]:
    """A detached 1,000-element map plus its gather: checks the two submissions and the array
    job's script; returns the run's id, its state and the array's job id."""
    run_id = submit_detached(_load(tmp_path, "wide"), {"n": 1000}, _cfg(tmp_path, sched))
    calls = _calls(submissions)
    assert len(calls) == 2, calls  # the squares' array job, then total waiting on it
    store = Store.open(tmp_path)
    state = load_state(store, run_id)
    assert state is not None
    sep = "_" if sched == "slurm" else "."
    array_id = (state.tasks[min(state.tasks)].native_id or "").split(sep)[0]
    assert ("--dependency=afterok:" if sched == "slurm" else "-hold_jid ") + str(array_id) \
        in calls[1], calls
    squares = sorted((t for t in state.tasks.values() if t.name != "total"), key=lambda t: t.idx)
    assert len(squares) == 1000
    assert [t.native_id for t in squares] == [f"{array_id}{sep}{i}" for i in range(1, 1001)]
    script = next(Path(state.cwd, ".corral").rglob("arrays/*/job.sh")).read_text()
    assert ("#SBATCH --array=1-1000%50" if sched == "slurm" else "#$ -tc 50") in script, script
    return run_id, state, array_id


@pytest.mark.slow
@pytest.mark.parametrize("sched", ["slurm"], indirect=True)
def test_thousand_element_map_is_two_submissions(tmp_path: Path, sched: str,
                                                 submissions: Path) -> None:
    """Run to its end (about two minutes on the rig: 1,000 worker start-ups on two cores)."""
    run_id, state, _ = _submit_thousand(tmp_path, sched, submissions)
    store = Store.open(tmp_path)
    # few reconciles (each reads up to 1,000 markers and asks the scheduler once, taking CPU
    # from the elements): watch total's marker, reconcile every 30 s in case the run failed
    total = next(t for t in state.tasks.values() if t.name == "total")
    deadline, next_check = time.time() + 900, time.time() + 30
    while not Path(total.workdir, "exit.json").exists() and time.time() < deadline:
        if time.time() > next_check:
            if reconcile(store, run_id)["state"] != "detached":
                break
            next_check = time.time() + 30
        time.sleep(1.0)
    summary = _wait(store, run_id, timeout=60)
    assert summary["state"] == "succeeded", summary
    assert corral.Client(tmp_path).run(run_id).task_result("total") == sum(
        i * i for i in range(1000))
    assert len(_calls(submissions)) == 2  # reconciling submitted nothing


@pytest.mark.parametrize("sched", ["sge"], indirect=True)
def test_thousand_element_array_cancelled_midway(tmp_path: Path, sched: str,
                                                 submissions: Path) -> None:
    """The same 1,000-element array on Grid Engine, cancelled once its first elements ran:
    what finished stays succeeded (a rerun reuses it), the rest and the held gather are
    deleted. (Running all 1,000 to the end is the SLURM test's job: two minutes of worker
    start-ups on this machine's two cores.)"""
    run_id, state, array_id = _submit_thousand(tmp_path, sched, submissions)
    markers = [Path(t.workdir, "exit.json") for t in state.tasks.values() if t.name != "total"]
    deadline = time.time() + 120
    while sum(m.exists() for m in markers) < 40:
        assert time.time() < deadline, "fewer than 40 elements ran in 120 s"
        time.sleep(0.5)
    out = subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "corral.cli.app", "cancel", run_id, "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert out.returncode == 0, out.stderr
    total = next(t for t in state.tasks.values() if t.name == "total")
    _drained(sched, [array_id, (total.native_id or "").split(".")[0]], timeout=60)
    store = Store.open(tmp_path)
    assert store.get_run(run_id)["state"] == "cancelled"
    done = {m.parent.name for m in markers if m.exists()}
    states = {t["name"]: t["state"] for t in store.tasks(run_id)}
    succeeded = [name for name, st in states.items() if st == "succeeded"]
    assert len(succeeded) >= 40, states
    assert set(states.values()) == {"succeeded", "cancelled"}, set(states.values())
    assert states["total"] == "cancelled"
    assert len(succeeded) <= len(done)  # only elements that wrote their marker succeeded
    run = corral.Client(tmp_path).run(run_id)
    for name in succeeded[:5]:  # their results are recorded: a rerun takes them from the cache
        i = int(name.removeprefix("square[").removesuffix("]"))
        assert run.task_result(name) == i * i
    assert not Path(total.workdir, "exit.json").exists()
    assert len(_calls(submissions)) == 2  # cancelling submitted nothing


def test_failed_elements_retried_alone_as_one_array(tmp_path: Path, sched: str,
                                                     submissions: Path) -> None:
    """Elements 2 and 4 of a 4-element map fail on attempt 1: only they are resubmitted, as
    one array of two elements, and the gather again."""
    run_id = submit_detached(_load(tmp_path, "one_flaky"), {}, _cfg(tmp_path, sched))
    assert len(_calls(submissions)) == 2
    store = Store.open(tmp_path)
    summary = _wait(store, run_id, timeout=180)
    assert summary["state"] == "succeeded", (summary, store.tasks(run_id))
    assert corral.Client(tmp_path).run(run_id).task_result("total") == 100
    calls = _calls(submissions)
    # the two elements' retry as one array, then total again (waiting on it): two more
    assert len(calls) == 4, calls
    states = _attempt_states(store, run_id)
    for i in (1, 3):
        assert states[f"flaky_retried[{i}]"] == ["failed", "succeeded"], states
    for i in (0, 2):
        assert states[f"flaky_retried[{i}]"] == ["succeeded"], states
    assert states["total"] == ["withdrawn", "succeeded"], states
    state = load_state(store, run_id)
    assert state is not None
    retried = [t for t in state.tasks.values() if t.name in ("flaky_retried[1]",
                                                             "flaky_retried[3]")]
    sep = "_" if sched == "slurm" else "."
    array_id = (retried[0].native_id or "").split(sep)[0]
    assert [t.native_id for t in retried] == [f"{array_id}{sep}1", f"{array_id}{sep}2"]
    assert all(t.workdir.endswith(".2") for t in retried)
    listing = next(Path(state.cwd, ".corral").rglob(f"arrays/*-{state.run_id}.*.2/attempts.txt"))
    assert listing.read_text().splitlines() == [t.workdir for t in retried]
    assert array_id in calls[3], calls  # total waits on the retried elements' array


def test_map_over_map_is_one_array_waiting_element_wise(tmp_path: Path, sched: str,
                                                        submissions: Path) -> None:
    run_id = submit_detached(_load(tmp_path, "chained"), {}, _cfg(tmp_path, sched))
    calls = _calls(submissions)
    assert len(calls) == 3, calls  # squares, doubles (element i after square i), total
    store = Store.open(tmp_path)
    state = load_state(store, run_id)
    assert state is not None
    sep = "_" if sched == "slurm" else "."
    by_name = {t.name: t for t in state.tasks.values()}
    squares = (by_name["square[0]"].native_id or "").split(sep)[0]
    doubles = (by_name["double[0]"].native_id or "").split(sep)[0]
    assert [by_name[f"double[{i}]"].native_id for i in range(3)] == [
        f"{doubles}{sep}{i}" for i in (1, 2, 3)]
    corr = f"--dependency=aftercorr:{squares} " if sched == "slurm" else \
        f"-hold_jid_ad {squares} "
    assert corr in calls[1], calls
    assert (f"--dependency=afterok:{doubles} " if sched == "slurm" else
            f"-hold_jid {doubles} ") in calls[2], calls
    summary = _wait(store, run_id, timeout=120)
    assert summary["state"] == "succeeded", (summary, store.tasks(run_id))
    assert corral.Client(tmp_path).run(run_id).task_result("total") == 2 * (1 + 4 + 9)
    assert len(_calls(submissions)) == 3


def test_map_over_map_failed_element_skips_its_own(tmp_path: Path, sched: str,
                                                   submissions: Path) -> None:
    """Element 2 of the first map fails: element 2 of the second never runs its task (on
    Grid Engine, released by -hold_jid_ad, it checks element 2's marker), the others do."""
    run_id = submit_detached(_load(tmp_path, "chained_failing"), {}, _cfg(tmp_path, sched))
    assert len(_calls(submissions)) == 2
    store = Store.open(tmp_path)
    state = load_state(store, run_id)
    assert state is not None
    skipped = next(t for t in state.tasks.values() if t.name == "double[1]")
    if sched == "sge":  # nobody reconciles yet: released, the element refuses by itself
        err = Path(skipped.workdir, "stderr.log")
        deadline = time.time() + 60
        while "not running this task" not in (err.read_text() if err.exists() else ""):
            assert time.time() < deadline, "element 2 of double was never released"
            time.sleep(0.5)
        assert state.tasks[skipped.deps[0]].workdir in err.read_text()
    summary = _wait(store, run_id, timeout=120)
    assert summary["state"] == "failed", summary
    states = {t["name"]: t["state"] for t in store.tasks(run_id)}
    assert states == {"fragile[0]": "succeeded", "fragile[1]": "failed",
                      "fragile[2]": "succeeded", "double[0]": "succeeded",
                      "double[1]": "skipped", "double[2]": "succeeded"}, states
    handle = corral.Client(tmp_path).run(run_id)
    assert [handle.task_result(f"double[{i}]") for i in (0, 2)] == [2, 6]
    assert not Path(skipped.workdir, "exit.json").exists()  # its task never ran


def test_exported_datapipe_uses_arrays_and_runs(tmp_path: Path, sched: str,
                                                server: tuple[Path, str],
                                                submissions: Path) -> None:
    """The datapipe example exported: its download and analyze scatters are array jobs, and
    the script runs to completion with plain bash."""
    served, url = server
    work = tmp_path / "work"
    pipe = corral.load_pipeline(EXAMPLE / "pipeline.py")
    params = {"base_url": url, "shards": SHARDS, "dest": "site"}
    fmt = {"slurm": "sbatch", "sge": "sge"}[sched]
    dest = export_script(pipe, params, _cfg(work, sched), tmp_path / "pipeline.sh", fmt=fmt)
    text = dest.read_text()
    arrays = re.findall(r"^# (\w+): (\d+) tasks .* as one array job", text, re.M)
    # download over the items, analyze over the shards of each item, and convert over the
    # download elements one by one: element i waits for download's element i
    assert sorted(arrays) == [("analyze", "3"), ("analyze", "3"), ("convert", "2"),
                              ("download", "2")], text
    corr = "--dependency=aftercorr:$jid_download" if sched == "slurm" else \
        "-hold_jid_ad $jid_download"
    assert re.search(rf"^jid_convert=\$\(.*{re.escape(corr)}\b.* convert.sh\)$", text,
                     re.M), text
    # each item's analyze waits for its own convert element (the whole array on SGE)
    if sched == "slurm":
        assert "--dependency=afterok:${jid_convert}_1 " in text, text
    assert len(re.findall(r"^jid_\w+=\$\(", text, re.M)) == 7, text
    out = subprocess.run(["bash", str(dest)], capture_output=True, text=True,  # noqa: S603
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(_calls(submissions)) == 7  # one submission per line of the script
    store = Store.open(work)
    run_id = store.list_runs(1)[0]["id"]
    summary = _wait(store, run_id, timeout=300)
    assert summary["state"] == "succeeded", (summary, store.tasks(run_id))
    _check_outputs(served, work)


def test_cached_elements_are_left_out_of_the_array(tmp_path: Path) -> None:
    """A rerun after a partial run submits only the missing elements (no cluster needed)."""
    assert corral.run(_load(tmp_path, "wide"), params={"n": 3}, workdir=tmp_path).ok
    dest = export_script(_load(tmp_path, "wide"), {"n": 5},
                         RunConfig(executor="local", workdir=tmp_path, new=True),
                         tmp_path / "pipeline.sh")
    text = dest.read_text()
    assert "# square: 2 tasks (square[3] .. square[4]) as one array job" in text, text
    assert len(re.findall(r"^jid_\w+=\$\(", text, re.M)) == 2, text
    square = (tmp_path / "pipeline.jobs" / "square.sh").read_text()
    assert "#SBATCH --array=1-2%2" in square
    listing = re.search(r"sed -n \"\$\{SLURM_ARRAY_TASK_ID:-0\}p\" ([^)\s]+)", square)
    assert listing is not None
    dirs = Path(listing.group(1)).read_text().splitlines()
    assert [Path(d).name.split("-", 1)[1] for d in dirs] == ["square_3_.1", "square_4_.1"]
