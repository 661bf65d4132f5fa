"""A task that kills its pool worker fails alone: the other tasks of its chunk (whose results
may not have been sent yet) run again, one per worker, until the culprit is found."""

from __future__ import annotations

import os
from pathlib import Path

import corral
from corral import pipeline, task


@task
def maybe_die(i: int) -> int:
    if i == 3:
        os._exit(7)
    return i


@pipeline
def many(n: int = 40):
    return maybe_die.map(i=range(n))


def test_worker_death_fails_only_its_task(tmp_path: Path) -> None:
    result = corral.run(many, {"n": 40}, jobs=2, workdir=tmp_path)
    assert not result.ok
    states = {t["name"]: t["state"] for t in corral.Client(tmp_path).run(result.run_id).tasks()}
    assert states.pop("maybe_die[3]") == "failed"
    assert set(states.values()) == {"succeeded"}, states
    assert any("exit code 7" in e for e in result.errors), result.errors
