"""A failing task: run FAILED, traceback with the task's own frame, downstream skipped,
independent branches finish; fail_fast."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral import RunState

from .corehelp import Helper

FAILING = '''
import time
from pathlib import Path
from corral import task, pipeline, shell

@task
def prepare(x: int) -> int:
    return x + 1

@task
def boom(x: int) -> int:
    if x > 0:
        raise ValueError(f"bad value {x}")
    return x

@task
def after(x: int) -> int:
    return x * 2

@task
def independent(name: str) -> Path:
    time.sleep(0.5)
    Path(name).write_text("done")
    return Path(name)

@pipeline
def failing():
    b = boom(prepare(1))
    last = after(after(b))
    s = shell("echo {params.v} > {output}", outputs="skipped.txt", params={"v": b}, name="sh")
    return last, s, independent("indep.txt")
'''


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_failure_traceback_skips_downstream_and_finishes_other_branches(helper: Helper) -> None:
    path = helper.write(FAILING, "failing_pipe.py")
    import corral

    pipe = corral.load_pipeline(path)
    r = helper.run(pipe)
    assert r.state.value == "failed"
    assert not r.ok
    assert len(r.errors) == 1 and r.errors[0].startswith("boom: failed: ValueError: bad value 2")
    states = helper.states(r.run_id)
    assert states == {
        "prepare": "succeeded", "boom": "failed", "after": "skipped", "after~1": "skipped",
        "sh": "skipped", "independent": "succeeded",
    }
    assert helper.tasks(r.run_id)["after~1"]["error"] == "upstream task boom failed"
    (attempt,) = [a for a in helper.attempts(r.run_id) if a["task"] == "boom"]
    error = attempt["error"]
    assert error.startswith("Traceback (most recent call last):")
    raise_line = _line_of(path, 'raise ValueError(f"bad value {x}")')
    assert f'File "{path}", line {raise_line}, in boom' in error, error
    assert "ValueError: bad value 2" in error
    assert attempt["exit_code"] == 1 and attempt["state"] == "failed"
    assert sorted({a["task"] for a in helper.attempts(r.run_id)}) == [
        "boom", "independent", "prepare"]
    assert (helper.workdir / "indep.txt").read_text() == "done"
    assert not (helper.workdir / "skipped.txt").exists()
    run_row = helper.store.get_run(r.run_id)
    assert run_row["state"] == "failed" and "bad value 2" in (run_row["error"] or "")
    assert run_row["engine_pid"] is None, "the lock is released when the run ends"
    with pytest.raises(corral.TaskFailed, match="boom"):
        _ = r.value


def test_shell_failure_records_exit_code_and_stderr(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import pipeline, shell
        @pipeline
        def shfail():
            return shell("echo oops-on-stderr >&2; exit 3", outputs="x.txt", name="bad")
    ''')
    r = helper.run(pipe)
    assert r.state is RunState.FAILED
    (attempt,) = helper.attempts(r.run_id)
    assert attempt["exit_code"] == 3
    assert "exited with status 3" in attempt["error"]
    assert "oops-on-stderr" in attempt["error"]
    logs = Path(attempt["workdir"])
    assert (logs / "stderr.log").read_text().strip() == "oops-on-stderr"


def test_fail_fast_cancels_the_rest(helper: Helper) -> None:
    pipe = helper.load('''
        import time
        from corral import task, pipeline
        @task
        def boom() -> None:
            raise RuntimeError("stop")
        @task
        def slow(i: int) -> int:
            time.sleep(0.3)
            return i
        @pipeline
        def ff():
            return boom(), slow.map(i=list(range(20)))
    ''')
    r = helper.run(pipe, fail_fast=True)
    assert r.state.value == "cancelled"
    states = list(helper.states(r.run_id).values())
    assert "failed" in states and "cancelled" in states
    finished = [a for a in helper.attempts(r.run_id) if a["state"] == "succeeded"]
    assert len(finished) < 20, "queued attempts are cancelled, not run"
    assert all(a["state"] in ("succeeded", "failed", "cancelled")
               for a in helper.attempts(r.run_id))


def test_task_stdout_is_captured_in_logs(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import task, pipeline
        @task
        def chatty() -> int:
            print("hello from the task")
            return 1
        @pipeline
        def talk():
            return chatty()
    ''')
    r = helper.run(pipe)
    assert r.ok
    (attempt,) = helper.attempts(r.run_id)
    assert (Path(attempt["workdir"]) / "stdout.log").read_text() == "hello from the task\n"
    assert json.loads(json.dumps(attempt["resources"]))["cores"] == 1
