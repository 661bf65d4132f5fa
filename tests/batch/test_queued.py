"""Queued is not running: array elements the scheduler still holds (PENDING in squeue, `qw` in
Grid Engine; here behind an array throttle of 1) show as `queued` with their waiting time in
`corral status`, and `running` once started. Real SLURM and Grid Engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PIPE = '''
import time
from corral import pipeline, task

@task
def nap(i: int) -> int:
    time.sleep(3)
    return i

@pipeline
def naps():
    return nap.map(i=range(3))
'''

PROFILE = '''
[executors.one]
kind = "{kind}"
array_throttle = 1
poll_interval = 0.3
max_poll_interval = 1.0
marker_interval = 0.2
'''


def _corral(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "corral.cli.app", *args], cwd=cwd,  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _states(cwd: Path) -> dict[str, tuple[str, float | None]]:
    out = _corral(cwd, "status", "latest", "--json").communicate(timeout=60)[0]
    try:
        data = json.loads(out)
    except ValueError:
        return {}
    return {t["name"]: (t["state"], t.get("queued")) for t in data["tasks"]}


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm),
                                  pytest.param("sge", marks=pytest.mark.sge)])
def test_held_array_elements_are_queued_not_running(
    kind: str, tmp_path: Path, harness_for: Callable[[str], Any]
) -> None:
    harness_for(kind)
    (tmp_path / "naps.py").write_text(PIPE)
    (tmp_path / "corral.toml").write_text(PROFILE.replace("{kind}", kind))
    run = _corral(tmp_path, "run", "naps.py", "-e", "one", "-j", "10", "-q")
    seen: dict[str, tuple[str, float | None]] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = _states(tmp_path)
            states = [s for s, _ in seen.values()]
            if states.count("running") == 1 and states.count("queued") == 2:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"never one running and two queued: {seen}")
        queued = [q for s, q in seen.values() if s == "queued"]
        assert all(q is not None and q >= 0 for q in queued), seen
        out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, (out, err)
    assert {s for s, _ in _states(tmp_path).values()} == {"succeeded"}
