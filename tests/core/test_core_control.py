"""Run control from Python: pause, resume, cancel; re-running a failed run resumes it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import corral

from .corehelp import Helper, wait_for

SLOW = '''
import os
import time
from corral import task, pipeline

@task(retries={retries})
def slow(i: int) -> int:
    time.sleep(0.4)
    return i * 100 + int(os.environ["CORRAL_ATTEMPT"])

@task
def total(xs: list) -> int:
    return sum(xs)

@pipeline
def slow_run(n: int = 12):
    return total(slow.map(i=list(range(n))))
'''


def _count(handle: corral.RunHandle, state: str) -> int:
    return sum(1 for a in handle.attempts() if a["state"] == state)


def _pause_and_settle(handle: corral.RunHandle) -> None:
    """Pause, then wait until the run says paused and no attempt is submitted or running."""
    handle.pause()
    wait_for(lambda: handle.state.value == "paused", what="the run to pause")
    wait_for(lambda: not [a for a in handle.attempts() if a["state"] in ("submitted", "running")],
             what="running attempts to finish")


def test_pause_and_resume(helper: Helper) -> None:
    pipe = helper.load(SLOW.format(retries=1))
    handle = corral.start(pipe, {"n": 12}, jobs=2, workdir=helper.workdir)
    wait_for(lambda: _count(handle, "succeeded") >= 2, what="two attempts to finish")
    # attempts running when the pause came finish; queued ones are withdrawn
    _pause_and_settle(handle)
    seen = len(handle.attempts())
    done = _count(handle, "succeeded")
    assert done < 12
    time.sleep(1.5)  # nothing may start while paused
    assert len(handle.attempts()) == seen
    assert _count(handle, "succeeded") == done
    assert handle.state.value == "paused"
    handle.resume()
    assert handle.wait(timeout=60).value == "succeeded"
    assert handle.result is None or handle.result.ok
    # every task saw attempt 1: a withdrawn attempt is not a real attempt
    assert handle.task_result("total") == sum(i * 100 + 1 for i in range(12))
    tasks = {t["name"]: t for t in handle.tasks()}
    assert all(t["state"] == "succeeded" for t in tasks.values())
    withdrawn = [a for a in handle.attempts() if a["state"] == "withdrawn"]
    for a in withdrawn:
        later = [b for b in handle.attempts() if b["task_id"] == a["task_id"]
                 and b["state"] == "succeeded"]
        assert len(later) == 1
        assert later[0]["number"] > a["number"]
    assert withdrawn, "the pause withdrew queued attempts"


def test_pause_holds_the_queued_elements_of_a_map(helper: Helper) -> None:
    """Tasks of a map are not sent to a worker in a batch it cannot give back: after a pause
    at most the element already running (and one racing the pause) finishes."""
    pipe = helper.load(SLOW.format(retries=0))
    handle = corral.start(pipe, {"n": 6}, jobs=1, workdir=helper.workdir)
    wait_for(lambda: _count(handle, "running") >= 1, what="the first attempt to start")
    _pause_and_settle(handle)
    time.sleep(1.0)
    assert _count(handle, "succeeded") <= 2, [a["state"] for a in handle.attempts()]
    handle.resume()
    assert handle.wait(timeout=60).value == "succeeded"


def test_cancel(helper: Helper) -> None:
    pipe = helper.load(SLOW.format(retries=0))
    handle = corral.start(pipe, {"n": 12}, jobs=2, workdir=helper.workdir)
    wait_for(lambda: _count(handle, "succeeded") >= 1, what="an attempt to finish")
    handle.cancel()
    assert handle.wait(timeout=30).value == "cancelled"
    states = {t["name"]: t["state"] for t in handle.tasks()}
    assert "cancelled" in states.values()
    assert set(states.values()) <= {"succeeded", "cancelled"}, states  # none left pending
    assert _count(handle, "succeeded") < 12
    assert handle.info["engine_pid"] is None
    with pytest.raises(corral.UsageError, match="already ended"):
        handle.pause()
    # running it again resumes the cancelled run: only unfinished tasks run
    finished_before = {name for name, st in states.items() if st == "succeeded"}
    cancelled_at = time.time()
    r = helper.run(pipe, {"n": 12})
    assert r.ok and r.run_id == handle.run_id
    ran = {a["task"] for a in helper.attempts(r.run_id) if a["submitted_at"] > cancelled_at}
    assert ran and not ran & finished_before


FLAKY = '''
from pathlib import Path
from corral import task, pipeline

@task
def part(i: int) -> int:
    if i == 2 and not Path("{flag}").exists():
        raise RuntimeError("no flag yet")
    return i

@task
def total(xs: list) -> int:
    return sum(xs)

@pipeline
def flaky_run(n: int = 5):
    return total(part.map(i=list(range(n))))
'''


def test_rerunning_a_failed_run_resumes_it(helper: Helper, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    path = helper.write(FLAKY.format(flag=flag), "flaky_run.py")
    pipe = corral.load_pipeline(path)
    r1 = helper.run(pipe, source=str(path))
    assert r1.state.value == "failed"
    assert helper.states(r1.run_id)["total"] == "skipped"
    flag.write_text("ok")
    notes: list[str] = []
    r2 = helper.run(pipe, source=str(path), on_note=notes.append)
    assert r2.ok and r2.value == 10
    assert r2.run_id == r1.run_id
    assert notes == [f"resuming run {r1.run_id} (failed)"]
    second = [a for a in helper.attempts(r1.run_id) if a["number"] == 2 or a["task"] == "total"]
    assert sorted(a["task"] for a in second) == ["part[2]", "total"]
    assert helper.states(r1.run_id) == {**{f"part[{i}]": "succeeded" for i in range(5)},
                                        "total": "succeeded"}
    assert len(helper.store.list_runs()) == 1
    # new=True starts a separate run even though one could be resumed
    r3 = helper.run(pipe, source=str(path), new=True)
    assert r3.run_id != r1.run_id and helper.attempts(r3.run_id) == []


def test_start_raises_validation_errors_at_once(helper: Helper) -> None:
    pipe = helper.load(SLOW.format(retries=0))
    with pytest.raises(corral.ParameterError):
        corral.start(pipe, {"n": "many"}, workdir=helper.workdir)
