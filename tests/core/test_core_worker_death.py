"""A task that kills its pool worker fails alone: the other tasks of its chunk (whose results
may not have been sent yet) run again, one per worker, until the culprit is found."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import corral
from corral import pipeline, task


@task
def maybe_die(i: int) -> int:
    if i == 3:
        os._exit(7)
    return i


@pipeline
def many(n: int = 40) -> list[int]:
    return maybe_die.map(i=range(n))


def test_worker_death_fails_only_its_task(tmp_path: Path) -> None:
    result = corral.run(many, {"n": 40}, jobs=2, workdir=tmp_path)
    assert not result.ok
    states = {t["name"]: t["state"] for t in corral.Client(tmp_path).run(result.run_id).tasks()}
    assert states.pop("maybe_die[3]") == "failed"
    assert set(states.values()) == {"succeeded"}, states
    assert any("exit code 7" in e for e in result.errors), result.errors


def test_pool_worker_ends_quietly_when_the_engine_is_gone() -> None:
    """After a kill -9 of the engine a worker finishing a task must not print a BrokenPipeError
    traceback over the user's terminal: it just ends."""
    import multiprocessing
    import pickle

    import cloudpickle

    from corral.worker.execute import PythonPayload
    from corral.worker.pool import worker_main

    def answer() -> int:
        return 42

    payload = PythonPayload("answer", cloudpickle.dumps(answer), cloudpickle.dumps(((), {})))
    engine_end, worker_end = multiprocessing.Pipe()
    engine_end.send([("a.1.1", pickle.dumps(payload), {})])
    engine_end.close()  # the engine dies before the result comes back
    # worker_main ignores SIGINT for good (a worker leaves Ctrl-C to its engine): restore it,
    # or every process this test session starts afterwards would inherit SIGINT ignored
    previous = signal.getsignal(signal.SIGINT)
    try:
        worker_main(worker_end)  # returns, no exception
    finally:
        signal.signal(signal.SIGINT, previous)


def test_pool_worker_applies_only_the_differences_between_attempts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from corral.worker.pool import AttemptEnv

    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    monkeypatch.delenv("CORRAL_ATTEMPT", raising=False)
    monkeypatch.delenv("CORRAL_MEMORY", raising=False)
    env = AttemptEnv()
    env.apply({"OMP_NUM_THREADS": "1", "CORRAL_ATTEMPT": "1", "CORRAL_MEMORY": "100"})
    assert (os.environ["OMP_NUM_THREADS"], os.environ["CORRAL_MEMORY"]) == ("1", "100")
    os.environ["CORRAL_ATTEMPT"] = "changed by the task"
    env.apply({"OMP_NUM_THREADS": "2", "CORRAL_ATTEMPT": "1"})
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["CORRAL_ATTEMPT"] == "1"
    assert "CORRAL_MEMORY" not in os.environ  # the previous attempt's, not set any more
    env.apply({})
    assert os.environ["OMP_NUM_THREADS"] == "64" and "CORRAL_ATTEMPT" not in os.environ


FORKSERVER_CTRL_C = '''
import multiprocessing as mp, os, signal, sys, time

def main() -> None:
    from corral.executors import local
    local._start_forkserver(["slow_import"])
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    from multiprocessing import forkserver
    time.sleep(0.3)  # the fork server is importing slow_import now
    os.kill(forkserver._forkserver._forkserver_pid, signal.SIGINT)  # a Ctrl-C reaches it
    time.sleep(1.5)
    p = mp.get_context("forkserver").Process(target=print, args=("worker started",))
    p.start()
    p.join()
    print("exit", p.exitcode)

if __name__ == "__main__":
    main()
'''


def test_ctrl_c_while_the_fork_server_preloads_is_quiet(tmp_path: Path) -> None:
    """A Ctrl-C reaches the whole process group; the fork server, still importing the
    pipeline's packages, must neither print a KeyboardInterrupt traceback nor die."""
    import subprocess
    import sys

    (tmp_path / "slow_import.py").write_text("import time\ntime.sleep(1.0)\n")
    (tmp_path / "main.py").write_text(FORKSERVER_CTRL_C)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "main.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "worker started" in proc.stdout and "exit 0" in proc.stdout
    assert "KeyboardInterrupt" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
