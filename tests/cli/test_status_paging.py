"""``corral status --offset N``: a run's tasks one by one, ``--limit`` at a time (issue 12 §5:
a million-task run is never loaded whole); a page is the slice of what listing every task gives."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.cli.common import EXIT_USAGE
from corral.cli.statusview import big_run_rows
from corral.store import Store
from corral.store.reader import open_reader

from .clihelp import invoke, one_line_error

PIPE = '''
from corral import pipeline, task

@task
def sq(x: int) -> int:
    if x in (7, 31):
        raise ValueError(f"{x} is not squared")
    return x * x

@task
def one() -> int:
    return 1

@pipeline
def p(n: int = 60):
    one()
    return sq.map(x=range(n))
'''


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Counter[str]]:
    """A failed run of 61 tasks, its task names in task order and its counts, loaded row by
    row as the full store gives them."""
    wd = tmp_path_factory.mktemp("paging")
    (wd / "p.py").write_text(PIPE)
    result = corral.run(corral.load_pipeline(wd / "p.py"), workdir=wd, jobs=2)
    assert result.state is corral.RunState.FAILED
    store = Store.open(wd)
    rows = store.tasks(result.run_id)
    store.close()
    return wd, [r["name"] for r in rows], Counter(r["state"] for r in rows)


def test_a_page_is_the_slice_of_every_task(ran: tuple[Path, list[str], Counter[str]]) -> None:
    wd, names, counts = ran
    assert counts == {"succeeded": 59, "failed": 2}
    for offset, limit in ((0, 10), (25, 10), (55, 10), (3, 0)):
        data = json.loads(invoke("status", "--offset", offset, "--limit", limit, "--json",
                                 "-C", wd).stdout)
        got = [r["name"] for r in data["tasks"]]
        assert got == names[offset:offset + limit if limit else None], (offset, limit)
        assert data["offset"] == offset
    out = invoke("status", "--offset", 25, "--limit", 10, "-C", wd).stdout
    lines = out.splitlines()
    assert "failed 2" in lines[0] and "succeeded 59" in lines[0], lines[0]
    table = lines[[line.split()[:1] for line in lines].index(["task"]) + 1:]
    shown = [line.split()[0] for line in table if line and not line.startswith("tasks ")]
    assert shown == names[25:35], out
    assert "tasks 26..35 of 61; the next: --offset 35" in out
    assert "sq[31]" in out and "failed" in out.split("sq[31]")[1].split("\n")[0]
    last = invoke("status", "--offset", 55, "--limit", 10, "-C", wd).stdout
    assert "tasks 56..61 of 61" in last and "--offset 65" not in last, last
    beyond = invoke("status", "--offset", 100, "-C", wd)
    assert beyond.exit_code == 0 and "no tasks from --offset 100: the run has 61" in beyond.stdout
    tsv = invoke("status", "--offset", 58, "--limit", 2, "--tsv", "-C", wd).stdout
    assert [line.split("\t")[0] for line in tsv.splitlines()[1:]] == names[58:60], tsv


def test_offset_does_not_go_with_watch_or_metrics(ran: tuple[Path, list[str], Any]) -> None:
    wd = ran[0]
    for flag in ("--watch", "--metrics"):
        result = invoke("status", "--offset", 0, flag, "-C", wd)
        assert result.exit_code == EXIT_USAGE, result.output
        one_line_error(result.stderr, "--offset", "--watch", "leave one of them out")
    result = invoke("status", "--offset", -1, "-C", wd)
    assert result.exit_code == EXIT_USAGE and "greater than or equal to 0" in result.stderr


def test_an_ended_runs_summary_shows_what_counting_shows(
        ran: tuple[Path, list[str], Counter[str]]) -> None:
    """The grouped table of an ended run read from its summary without SQLAlchemy is the one
    the full store counts, and its counts are the rows' (what the old per-row path gave)."""
    wd, _, counts = ran
    store = Store.open(wd)
    reader = open_reader(wd, None)
    assert reader is not None
    try:
        run_id = store.get_run("latest")["id"]
        for limit in (1, 2, 3, 10):
            got = big_run_rows(reader, run_id, limit)
            want = big_run_rows(store, run_id, limit)
            assert got[0] == want[0] == counts
            assert [[str(c) for c in row] for row in got[1]] == [[str(c) for c in row]
                                                                  for row in want[1]]
            assert got[2] == want[2]
        _, cells, note = big_run_rows(reader, run_id, 10)
        assert [str(row[0]) for row in cells] == ["one", "sq[0..59]", "sq[7]", "sq[31]"]
        assert note is not None and "--offset 0 lists the tasks one by one" in note
    finally:
        reader.close()
        store.close()
