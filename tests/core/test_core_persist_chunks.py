"""Task rows are built and written a chunk at a time (engine.PERSIST_CHUNK): every task gets its
row and its row id, across chunk boundaries, on a fresh run, a resumed one and a re-check."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral
from corral.engine import engine
from corral.store import Store

PIPE = '''
from corral import pipeline, task

@task
def square(x: int) -> int:
    return x * x

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def sums(n: int = 23):
    return total(square.map(x=range(n)))
'''


def test_rows_written_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "PERSIST_CHUNK", 5)  # 24 tasks: five chunks, the last of four
    (tmp_path / "p.py").write_text(PIPE)
    pipe = corral.load_pipeline(tmp_path / "p.py")
    first = corral.run(pipe, {"n": 23}, workdir=tmp_path, jobs=2)
    assert first.ok and first.value == sum(i * i for i in range(23))
    again = corral.run(pipe, {"n": 23}, workdir=tmp_path, jobs=2, new=True)  # all cached
    assert again.ok and again.value == first.value
    store = Store.open(tmp_path)
    try:
        for run_id, state in ((first.run_id, "succeeded"), (again.run_id, "cached")):
            rows = store.tasks(run_id)
            assert sorted(r["idx"] for r in rows) == list(range(24))
            assert {r["state"] for r in rows} == {state}
            assert len({r["id"] for r in rows}) == 24
        attempts = store.attempts(first.run_id)  # each attempt names its own task's row
        ids = {r["id"]: r["name"] for r in store.tasks(first.run_id)}
        assert sorted(ids[a["task_id"]] for a in attempts) == sorted(ids.values())
    finally:
        store.close()
