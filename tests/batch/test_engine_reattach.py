"""The whole flow a cluster user sees: `corral run -e slurm`, the engine is SIGKILLed while
jobs run, the same command again re-attaches to those jobs instead of resubmitting them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PIPE = '''
import time
from corral import task, pipeline

@task
def nap(i: int) -> int:
    time.sleep(8)
    return i

@task
def total(xs: list) -> int:
    return sum(xs)

@pipeline
def naps(n: int = 3):
    return total(nap.map(i=range(n)))
'''

PROFILE = '''
[executors.fast]
kind = "{kind}"
poll_interval = 0.3
max_poll_interval = 1.0
marker_interval = 0.2
'''


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def _corral(workdir: Path, pipe: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "corral.cli.app", "run", str(pipe), "-e", "fast", "-j", "10",
            "-q", "--workdir", str(workdir)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,  # noqa: S603
                            start_new_session=True)


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm),
                                  pytest.param("sge", marks=pytest.mark.sge)])
def test_killed_engine_reattaches_to_running_jobs(
    kind: str, tmp_path: Path, harness_for: Callable[[str], Any]
) -> None:
    harness_for(kind)  # skips (or fails with CORRAL_REQUIRE_CLUSTERS=1) without the cluster
    pipe = tmp_path / "naps.py"
    pipe.write_text(PIPE)
    (tmp_path / "corral.toml").write_text(PROFILE.replace("{kind}", kind))
    db = tmp_path / ".corral" / "state.db"
    first = _corral(tmp_path, pipe)
    deadline = time.time() + 60
    while time.time() < deadline:
        started = _rows(db, "SELECT COUNT(*) FROM attempts WHERE native_id IS NOT NULL")
        if started and started[0][0] >= 3:
            break
        time.sleep(0.2)
    else:
        os.killpg(first.pid, signal.SIGKILL)
        pytest.fail("the scatter was not submitted within 60 s")
    before = sorted(r[0] for r in _rows(db, "SELECT native_id FROM attempts"))
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)

    second = _corral(tmp_path, pipe)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, out + err
    assert "took over run" in err  # the stale lock of the killed engine
    attempts = _rows(db, "SELECT native_id, state, task_id FROM attempts ORDER BY native_id")
    nap_attempts = [a for a in attempts if a[0] in before]
    # the three array elements were re-attached and finished: no second submission of them
    assert len(nap_attempts) == 3 and all(a[1] == "succeeded" for a in nap_attempts), attempts
    assert len(attempts) == 4  # plus the gather
    runs = _rows(db, "SELECT COUNT(*), MAX(state) FROM runs")
    assert runs == [(1, "succeeded")]
