"""corral.start: the handle gives the finished run's result, and re-raises an engine error."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral
from corral import pipeline, task
from corral.engine.engine import Engine


@task
def double(x: int) -> int:
    return 2 * x


@pipeline
def doubled(n: int = 3) -> list[int]:
    return double.map(x=range(n))


def test_handle_result_after_wait(tmp_path: Path) -> None:
    handle = corral.start(doubled, {"n": 3}, jobs=2, workdir=tmp_path)
    assert handle.wait(60).value == "succeeded"
    assert handle.result is not None and handle.result.value == [0, 2, 4]


def test_handle_reraises_engine_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Engine) -> None:
        raise RuntimeError("engine broke")

    monkeypatch.setattr(Engine, "prepare", broken)
    handle = corral.start(doubled, {"n": 2}, jobs=1, workdir=tmp_path)
    with pytest.raises(RuntimeError, match="engine broke"):
        handle.wait(60)
    assert handle.result is None
