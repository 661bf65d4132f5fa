"""Detached runs on PBS and LSF: scatters as array jobs (``-J 1-N%T`` / ``-J "name[1-N]%T"``).

There is no real PBS or LSF here: these run against the project's small fake scheduler
(``tests/fakes``), which reads the directives, runs the scripts element by element with the
scheduler's index variable and honours ``afterok``/``done()`` dependencies on whole jobs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.api import RunConfig
from corral.engine.detached import load_state, submit_detached
from corral.store import Store

from .test_detach import _wait

FAKES = Path(__file__).resolve().parents[1] / "fakes"

PIPE = '''
from corral import pipeline, task


@task
def square(x: int) -> int:
    return x * x


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(values: list) -> int:
    return sum(values)


@pipeline
def wide():
    return total(double.map(square.map([1, 2, 3, 4])))
'''


@pytest.fixture(params=["pbs", "lsf"])
def fake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    kind: str = request.param
    monkeypatch.setenv("PATH", f"{FAKES / kind}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCHED_DIR", str(tmp_path / "fakesched"))
    return kind


def _load(tmp_path: Path) -> Any:
    path = tmp_path / "pipe_fake.py"
    path.write_text(PIPE)
    return corral.load_pipeline(path, "wide")


def test_map_is_one_array_on_pbs_and_lsf(tmp_path: Path, fake: str) -> None:
    run_id = submit_detached(_load(tmp_path), {}, RunConfig(executor=fake, workdir=tmp_path,
                                                             new=True))
    jobs = sorted((tmp_path / "fakesched" / "jobs").glob("*.json"))
    # squares (one array); doubles: no element-wise dependency here, so one job per element,
    # each waiting for the squares' array; total
    assert len(jobs) == 1 + 4 + 1, [j.name for j in jobs]
    state = load_state(Store.open(tmp_path), run_id)
    assert state is not None
    by_name = {t.name: t for t in state.tasks.values()}
    element = r"^(\d+)\[([1-4])\]\.fakepbs$" if fake == "pbs" else r"^(\d+)\[([1-4])\]$"
    found = [re.match(element, by_name[f"square[{i}]"].native_id or "") for i in range(4)]
    assert all(found), [by_name[f"square[{i}]"].native_id for i in range(4)]
    assert len({m.group(1) for m in found if m}) == 1  # one job: the array
    assert [m.group(2) for m in found if m] == ["1", "2", "3", "4"]
    array = found[0].group(1) if found[0] else ""
    waits = [json.loads(j.read_text())["deps"] for j in jobs]
    assert waits.count([array]) == 4, waits  # each double waits for the whole array
    script = next(tmp_path.rglob("arrays/*/job.sh")).read_text()
    assert ("#PBS -J 1-4%4" if fake == "pbs" else "[1-4]%4\"") in script, script
    summary = _wait(Store.open(tmp_path), run_id, timeout=60)
    assert summary["state"] == "succeeded", summary
    assert corral.Client(tmp_path).run(run_id).task_result("total") == 2 * (1 + 4 + 9 + 16)
