"""Whole runs on the dask executor (engine, store and a LocalCluster of 2 worker processes on
127.0.0.1): a task past its walltime is reported ``timeout`` and retried per its policy, and
cancelling a run stops its running task on the worker."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import process_gone

import corral
from corral import RunState
from corral.worker.metrics import hostname

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    )
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture
def wd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "wd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def _load(wd: Path, source: str) -> Any:
    path = wd.parent / f"pipe_{time.monotonic_ns()}.py"
    path.write_text(textwrap.dedent(source))
    return corral.load_pipeline(path)


def _attempts(wd: Path, run_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(wd / ".corral" / "state.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT state, error FROM attempts WHERE run_id = ? "
                          "ORDER BY submitted_at", (run_id,))
        return [dict(r) for r in rows]


def _running(wd: Path, run_id: str) -> str | None:
    """The host of the run's attempt once it is recorded running with a start time."""
    with sqlite3.connect(wd / ".corral" / "state.db") as db:
        row = db.execute("SELECT state, host, started_at FROM attempts WHERE run_id = ?",
                         (run_id,)).fetchone()
    return row[1] if row and row[0] == "running" and row[2] is not None else None


def test_timeout_is_retried_with_more_walltime(wd: Path, cluster_address: str) -> None:
    pipe = _load(wd, '''
        import time
        from corral import Resources, pipeline, task

        @task(resources=lambda attempt: Resources(walltime=1 if attempt == 1 else 60), retries=1)
        def nap(seconds: float) -> str:
            time.sleep(seconds)
            return "rested"

        @pipeline
        def napping():
            return nap(4)
    ''')
    started = time.monotonic()
    r = corral.run(pipe, executor="dask", executor_options={"address": cluster_address},
                   jobs=2, workdir=wd)
    assert r.ok, r.errors
    assert r.value == "rested"
    states = [a["state"] for a in _attempts(wd, r.run_id)]
    assert states == ["timeout", "succeeded"]
    assert "walltime of 1 s" in (_attempts(wd, r.run_id)[0]["error"] or "")
    assert time.monotonic() - started < 40


def test_cancelling_a_run_stops_its_running_task(wd: Path, cluster_address: str) -> None:
    pid_file = wd / "task.pid"
    pipe = _load(wd, f'''
        import os, time
        from pathlib import Path
        from corral import pipeline, task

        @task
        def stuck() -> int:
            Path({str(pid_file)!r}).write_text(str(os.getpid()))
            time.sleep(120)
            return 1

        @pipeline
        def hanging():
            return stuck()
    ''')
    handle = corral.start(pipe, executor="dask", executor_options={"address": cluster_address},
                          jobs=2, workdir=wd)
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.1)
    pid = int(pid_file.read_text())
    assert not process_gone(pid)
    deadline = time.monotonic() + 20  # shown as running, where, while it runs
    while _running(wd, handle.run_id) is None:
        assert time.monotonic() < deadline, "the running attempt is not recorded as running"
        time.sleep(0.1)
    assert _running(wd, handle.run_id) == hostname()
    handle.cancel()
    assert handle.wait(60) is RunState.CANCELLED
    deadline = time.monotonic() + 5
    while not process_gone(pid):
        assert time.monotonic() < deadline, f"the task's process {pid} survived the cancellation"
        time.sleep(0.05)
    assert [a["state"] for a in _attempts(wd, handle.run_id)] == ["cancelled"]


def test_quiet_run_prints_nothing_and_dask_logs_go_to_the_run_log(wd: Path) -> None:
    """``corral run -q -e dask`` (its own LocalCluster): no line of distributed's INFO logs on
    the terminal; they are in the run's engine.log. With --json, standard output is the JSON."""
    (wd / "sq.py").write_text(textwrap.dedent('''
        from corral import pipeline, task

        @task
        def sq(x: int) -> int:
            return x * x

        @pipeline
        def squares(n: int = 3):
            return [sq(i) for i in range(n)]
    '''))
    corral_cli = str(Path(sys.executable).parent / "corral")
    quiet = subprocess.run([corral_cli, "run", "sq.py", "-e", "dask", "-q"], cwd=wd,  # noqa: S603
                           capture_output=True, text=True, timeout=120, check=False)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    logs = list((wd / ".corral" / "work").glob("*/engine.log"))
    assert len(logs) == 1 and "INFO distributed.scheduler" in logs[0].read_text()
    as_json = subprocess.run([corral_cli, "run", "sq.py", "-e", "dask", "--json", "--new"],  # noqa: S603
                             cwd=wd, capture_output=True, text=True, timeout=120, check=False)
    assert as_json.returncode == 0 and as_json.stderr == "", as_json.stderr
    assert json.loads(as_json.stdout)["state"] == "succeeded"
