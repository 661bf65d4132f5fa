"""``corral status`` of a run with more tasks than ``--limit`` counts and groups them in SQL
(issue 12: a million-task run is not loaded); what it shows is what grouping the loaded rows
shows."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import corral
from corral.cli import views
from corral.cli.statusview import big_run_rows, display_rows
from corral.store import Store

from .clihelp import corral as corral_cmd

PIPE = '''
from corral import pipeline, task

@task(retries=1)
def sq(x: int) -> int:
    if x in (7, 31):
        raise ValueError(f"{x} is not squared")
    return x * x

@task
def cube(x: int) -> int:
    return x ** 3

@task
def one() -> int:
    return 1

@pipeline
def p(n: int = 60):
    one()
    cube.map(x=range(5))
    return sq.map(x=range(n))
'''


def _plain(cells: Sequence[Sequence[object]]) -> list[list[str]]:
    return [[re.sub(r"\s+", " ", str(c)) for c in row] for row in cells]


def test_grouped_in_sql_as_when_loaded(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPE)
    result = corral.run(corral.load_pipeline(tmp_path / "p.py"), workdir=tmp_path, jobs=2)
    assert result.state is corral.RunState.FAILED
    store = Store.open(tmp_path)
    rows = views.task_rows(store.tasks(result.run_id), store.attempts(result.run_id))
    for limit in (3, 4, 10):
        counts, cells, note = big_run_rows(store, result.run_id, limit)
        loaded, loaded_note = display_rows(rows, limit)
        assert counts == {"succeeded": 64, "failed": 2}
        assert note == loaded_note, limit
        # the totals of cpu may differ (SQL sums every attempt, the loaded rows the last one)
        assert [r[:4] + r[5:] for r in _plain(cells)] == [r[:4] + r[5:] for r in _plain(loaded)], limit
    _, cells, _ = big_run_rows(store, result.run_id, 10)
    names = [str(row[0]) for row in cells]
    assert names == ["one", "cube[0..4]", "sq[0..59]", "sq[7]", "sq[31]"]
    out = corral_cmd("status", "--limit", "10", cwd=tmp_path).stdout
    assert "sq[0..59]" in out and "sq[31]" in out and "succeeded 64" in out, out


def test_watch_of_a_big_run_is_grouped_and_exits_with_its_state(tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPE)
    result = corral.run(corral.load_pipeline(tmp_path / "p.py"), workdir=tmp_path, jobs=2)
    proc = corral_cmd("status", result.run_id, "--watch", "--limit", "10", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # the run failed
    assert "sq[0..59]" in proc.stdout and "sq[7]" in proc.stdout and "failed 2" in proc.stdout, proc.stdout
    assert f"run {result.run_id} failed; see corral logs" in proc.stderr
