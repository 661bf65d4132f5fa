"""``corral.Executor`` on the local executor: a concurrent.futures executor whose calls are the
tasks of one recorded Corral run."""

from __future__ import annotations

import os
import time
from concurrent.futures import as_completed, wait
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.interactive import RemoteError
from corral.store import Store


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def explode(x: int) -> int:
    raise ValueError(f"no good: {x}")


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def make_scaler(factor: int) -> Any:
    def scale(x: int) -> int:
        return x * factor

    return scale


def _tasks(wd: Path, run_id: str) -> list[dict[str, Any]]:
    store = Store.open(wd)
    try:
        return [dict(r) for r in store.tasks(run_id)]
    finally:
        store.close()


def test_submit_and_map_return_values_in_order(wd: Path) -> None:
    with corral.Executor(workdir=wd, jobs=4) as ex:
        assert list(ex.map(square, range(12))) == [x * x for x in range(12)]
        assert ex.submit(add, 2, b=3).result(timeout=60) == 5
        assert list(ex.map(add, [1, 2], [10, 20])) == [11, 22]


def test_as_completed_and_wait(wd: Path) -> None:
    with corral.Executor(workdir=wd, jobs=4) as ex:
        futures = [ex.submit(square, x) for x in range(6)]
        got = sorted(f.result() for f in as_completed(futures, timeout=60))
        assert got == [x * x for x in range(6)]
        done, not_done = wait([ex.submit(square, 9)], timeout=60)
        assert not not_done and done.pop().result() == 81


def test_exception_reraised_with_remote_traceback(wd: Path) -> None:
    with corral.Executor(workdir=wd) as ex:
        fut = ex.submit(explode, 3)
        with pytest.raises(RemoteError) as info:
            fut.result(timeout=60)
        assert ex.submit(square, 2).result(timeout=60) == 4  # the run goes on
    text = str(info.value)
    assert "ValueError: no good: 3" in text
    assert "explode" in text and __file__ in text
    assert info.value.remote_traceback


def test_the_run_is_recorded(wd: Path) -> None:
    with corral.Executor(workdir=wd, name="squares") as ex:
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
        run_id = ex.run_id
    rows = [r for r in corral.runs(wd) if r["id"] == run_id]
    assert rows and rows[0]["state"] == "succeeded" and rows[0]["pipeline"] == "squares"
    options = rows[0]["options"]
    assert options is not None and options["code_parts"]  # for `corral why`
    tasks = _tasks(wd, run_id)
    assert len(tasks) == 5 and {t["state"] for t in tasks} == {"succeeded"}
    assert sorted(t["name"] for t in tasks) == [f"square[{i}]" for i in range(5)]


def test_second_session_gets_cached_results(wd: Path) -> None:
    with corral.Executor(workdir=wd) as ex:
        assert list(ex.map(square, range(4))) == [0, 1, 4, 9]
    with corral.Executor(workdir=wd) as ex:
        assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
        run_id = ex.run_id
    by_name = {t["name"]: t for t in _tasks(wd, run_id)}
    assert all(by_name[f"square[{i}]"]["cached"] for i in range(4))
    assert by_name["square[0]"]["state"] == "cached"
    assert not by_name["square[4]"]["cached"]


def test_cache_false_runs_again(wd: Path) -> None:
    with corral.Executor(workdir=wd) as ex:
        ex.submit(square, 3).result(timeout=60)
    with corral.Executor(workdir=wd, cache=False) as ex:
        assert ex.submit(square, 3).result(timeout=60) == 9
        run_id = ex.run_id
    assert [t["cached"] for t in _tasks(wd, run_id)] == [False]


def test_closure_works(wd: Path) -> None:
    triple = make_scaler(3)
    with corral.Executor(workdir=wd) as ex:
        assert list(ex.map(triple, [1, 2, 3])) == [3, 6, 9]


def meddle(tag: int) -> tuple[int, str, str]:
    """Changes the variables Corral set for it (its own business, not the next call's)."""
    os.environ["CORRAL_CORES"] = "99"
    os.environ["OMP_NUM_THREADS"] = "99"
    return os.getpid(), "", ""


def variables(tag: int) -> tuple[int, str, str]:
    return os.getpid(), os.environ["CORRAL_CORES"], os.environ["OMP_NUM_THREADS"]


def test_a_call_that_changes_its_variables_does_not_change_the_next_ones(wd: Path) -> None:
    """The worker skips writing the variables of a call when the previous call had the same
    ones: not when that call changed them meanwhile."""
    with corral.Executor(workdir=wd, jobs=1, cache=False) as ex:
        before = ex.submit(variables, 0).result(timeout=60)
        meddled = ex.submit(meddle, 1).result(timeout=60)
        after = ex.submit(variables, 2).result(timeout=60)
    assert before[0] == meddled[0] == after[0]  # one worker ran them all
    assert before[1:] == after[1:] == ("1", "1")


def test_the_collector_stays_on_while_calls_run(wd: Path) -> None:
    """The engine pauses Python's cyclic garbage collector while it works (an allocation
    burst), never for the time a call runs: the caller's own garbage is collected meanwhile."""
    import gc

    assert gc.isenabled()
    with corral.Executor(workdir=wd, jobs=1) as ex:
        fut = ex.submit(nap, 1.5)
        time.sleep(0.5)
        seen = []
        while not fut.done():
            seen.append(gc.isenabled())
            time.sleep(0.05)
    assert len(seen) > 5 and sum(seen) >= 0.9 * len(seen), seen
    assert gc.isenabled()


def _states_soon(wd: Path, run_id: str, name: str, wanted: set[str], within: float) -> str:
    """The state of task ``name`` once it is one of ``wanted`` (fails after ``within`` s)."""
    deadline = time.monotonic() + within
    seen = None
    while time.monotonic() < deadline:
        seen = {t["name"]: t["state"] for t in _tasks(wd, run_id)}.get(name)
        if seen in wanted:
            return str(seen)
        time.sleep(0.05)
    raise AssertionError(f"{name} is {seen}, not one of {sorted(wanted)}, after {within} s")


def test_rows_of_calls_are_written_when_they_end_or_soon(wd: Path) -> None:
    """A call's row is written once its call ended (with its state), or ROWS_WAIT seconds
    after the call was made if it is still queued or running: what `corral status` shows."""
    from corral.engine.recorder import ROWS_WAIT

    with corral.Executor(workdir=wd, jobs=1) as ex:
        run_id = ex.run_id
        assert ex.submit(square, 4).result(timeout=60) == 16
        assert _states_soon(wd, run_id, "square[0]", {"succeeded"}, 1.5)
        slow = ex.submit(nap, ROWS_WAIT + 2.5)
        assert _states_soon(wd, run_id, "nap[0]", {"queued", "running"}, ROWS_WAIT + 1.5)
        (row,) = [t for t in _tasks(wd, run_id) if t["name"] == "nap[0]"]
        store = Store.open(wd)
        try:  # its attempt is written with it
            assert [a["state"] for a in store.attempts(run_id, row["id"])] in (
                ["running"], ["submitted"])
        finally:
            store.close()
        assert not slow.done()  # (seen while it ran)
        slow.result(timeout=60)
    states = {t["name"]: t["state"] for t in _tasks(wd, run_id)}
    assert states == {"square[0]": "succeeded", "nap[0]": "succeeded"}


@pytest.mark.postgres
def test_calls_recorded_on_postgresql(wd: Path, pg_url: str) -> None:
    """The rows of calls written with the batches (see the test above) on PostgreSQL too:
    ended calls, a failed one, and one still running when its row is due."""
    from corral.engine.recorder import ROWS_WAIT

    with corral.Executor(workdir=wd, jobs=2, db=pg_url) as ex:
        run_id = ex.run_id
        assert list(ex.map(square, range(20))) == [x * x for x in range(20)]
        bad = ex.submit(explode, 1)
        slow = ex.submit(nap, ROWS_WAIT + 1.0)
        with pytest.raises(RemoteError):
            bad.result(timeout=60)
        slow.result(timeout=60)
    store = Store.open(wd, pg_url)
    try:
        rows = {t["name"]: t for t in store.tasks(run_id)}
        attempts = store.attempts(run_id)
    finally:
        store.close()
    assert len(rows) == 22 and len(attempts) == 22
    assert {rows[f"square[{i}]"]["state"] for i in range(20)} == {"succeeded"}
    assert rows["explode[0]"]["state"] == "failed" and rows["nap[0]"]["state"] == "succeeded"
    by_id = {t["id"]: t["name"] for t in rows.values()}
    assert {by_id[a["task_id"]] for a in attempts} == set(rows)


def test_shutdown_cancel_futures_cancels_pending(wd: Path) -> None:
    ex = corral.Executor(workdir=wd, jobs=1, cache=False)
    first = ex.submit(nap, 1.0)
    rest = [ex.submit(nap, 0.5 + i / 100) for i in range(5)]
    time.sleep(0.3)
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in rest)
    assert first.cancelled() or first.result() == 1.0
    tasks = _tasks(wd, ex.run_id)
    assert sum(t["state"] == "cancelled" for t in tasks) >= 5
    row = next(r for r in corral.runs(wd) if r["id"] == ex.run_id)
    assert row["state"] == "cancelled"
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_cancelling_one_future_cancels_its_task(wd: Path) -> None:
    with corral.Executor(workdir=wd, jobs=1, cache=False) as ex:
        running = ex.submit(nap, 0.5)
        queued = ex.submit(nap, 0.7)
        assert queued.cancel()
        assert running.result(timeout=60) == 0.5
        run_id = ex.run_id
    states = {t["name"]: t["state"] for t in _tasks(wd, run_id)}
    assert states["nap[0]"] == "succeeded"
    assert states.get("nap[1]", "cancelled") == "cancelled"


def test_map_timeout(wd: Path) -> None:
    with corral.Executor(workdir=wd, cache=False) as ex:
        results = ex.map(nap, [2.0], timeout=0.2)
        with pytest.raises(TimeoutError):
            next(results)


def test_a_corral_toml_profile(wd: Path) -> None:
    (wd / "corral.toml").write_text('[executors.here]\nkind = "local"\n')
    with corral.Executor("here", workdir=wd) as ex:
        assert ex.submit(square, 5).result(timeout=60) == 25
        run_id = ex.run_id
    row = next(r for r in corral.runs(wd) if r["id"] == run_id)
    assert row["executor"]["kind"] == "local"


def test_unknown_executor_is_refused(wd: Path) -> None:
    with pytest.raises(corral.CorralError, match="unknown executor"):
        corral.Executor("nosuchkind", workdir=wd)


def test_bad_executor_options_end_the_run(wd: Path) -> None:
    with pytest.raises(corral.CorralError):
        corral.Executor(workdir=wd, executor_options={"no_such_option": 1})
    assert [r["state"] for r in corral.runs(wd)] == ["failed"]


def test_an_argument_that_cannot_be_pickled_fails_its_call_only(wd: Path) -> None:
    import threading

    with corral.Executor(workdir=wd) as ex:
        bad = ex.submit(square, threading.Lock())
        good = ex.submit(square, 4)
        with pytest.raises(corral.CorralError):
            bad.result(timeout=60)
        assert good.result(timeout=60) == 16


def flaky(x: int) -> int:
    import os

    if os.environ["CORRAL_ATTEMPT"] == "1":
        raise RuntimeError("the first attempt fails")
    return x


def test_per_call_options(wd: Path) -> None:
    from corral import Resources

    with corral.Executor(workdir=wd, cache=False) as ex:
        retried = ex.options(retries=1)
        assert retried.submit(flaky, 7).result(timeout=60) == 7
        with pytest.raises(RemoteError, match="the first attempt fails"):
            ex.submit(flaky, 8).result(timeout=60)  # the executor's own retries=0
        big = ex.options(resources=Resources(cores=2, memory="1G"))
        assert list(big.map(square, [3, 4])) == [9, 16]
        run_id = ex.run_id
    attempts = corral.attach(run_id, wd).attempts()
    resources = [a["resources"] or {} for a in attempts]
    by_cores = sorted((r.get("cores"), r.get("memory")) for r in resources)
    assert by_cores.count((2, 1 << 30)) == 2 and len(attempts) == 5  # flaky[0] ran twice
    with pytest.raises(corral.CorralError, match="retries=-1 must be an integer >= 0"):
        ex.options(retries=-1)
    with pytest.raises(corral.CorralError, match="must be a corral.Resources"):
        ex.options(resources={"cores": 2})  # type: ignore[arg-type]


CTRL_C_SCRIPT = """
import sys, time
import corral

def nap(seconds):
    time.sleep(seconds)
    return seconds

with corral.Executor(workdir=sys.argv[1], jobs=1, cache=False, name="ctrl-c") as ex:
    futures = [ex.submit(nap, 60 + i) for i in range(4)]
    print("submitted", flush=True)
    futures[0].result()
"""


def test_ctrl_c_in_the_with_block_cancels_the_calls(wd: Path) -> None:
    import signal
    import subprocess
    import sys

    script = wd / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(wd)],  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "submitted"
    time.sleep(0.5)
    begin = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - begin < 30  # not waiting for the 60 s calls
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    row = next(r for r in corral.runs(wd) if r["pipeline"] == "ctrl-c")
    assert row["state"] == "cancelled", row
    assert {t["state"] for t in _tasks(wd, row["id"])} == {"cancelled"}
