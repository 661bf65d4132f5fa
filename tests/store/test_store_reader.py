"""The inspection commands' SQLite reader (no SQLAlchemy) returns exactly what the Store returns,
and steps aside whenever only the full store will do."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import corral
from corral.store import Store
from corral.store import schema as t
from corral.store.reader import BOOLEAN_COLUMNS, JSON_COLUMNS, open_reader

PIPELINE = '''
import corral

@corral.task(retries=1)
def part(x: int) -> int:
    if x == 2:
        raise ValueError("two is bad")
    return x * 10

@corral.task
def listing(n: int) -> str:
    return "x" * n

@corral.pipeline
def main(n: int = 4):
    return [part(i) for i in range(n)] + [listing(n)]
'''


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = tmp_path_factory.mktemp("reader")
    (wd / "p.py").write_text(PIPELINE)
    pipe = corral.load_pipeline(wd / "p.py")
    for n in (3, 4):  # one run that succeeds, one with a failed, retried task
        corral.run(pipe, {"n": n}, workdir=wd, source=str(wd / "p.py"), jobs=2)
    return wd


def test_rows_are_the_stores_rows(workdir: Path) -> None:
    store = Store.open(workdir)
    reader = open_reader(workdir, None)
    assert reader is not None
    try:
        assert reader.list_runs(10) == store.list_runs(10)
        assert len(store.list_runs(10)) == 2
        for run in store.list_runs(10):
            assert reader.get_run(run["id"][:18]) == store.get_run(run["id"][:18])
            assert reader.tasks(run["id"]) == store.tasks(run["id"])
            assert reader.attempts(run["id"]) == store.attempts(run["id"])
        assert reader.get_run("latest") == store.get_run("latest")
        latest = store.get_run("latest")["id"]
        failed = [a for a in reader.attempts(latest) if a["state"] == "failed"]
        assert len(failed) == 2 and isinstance(failed[0]["resources"], dict)  # JSON decoded
        assert any(task["cached"] is True for task in reader.tasks(latest))  # 0/1 made a bool
    finally:
        reader.close()
        store.close()


def test_unknown_and_ambiguous_runs_are_refused_as_by_the_store(workdir: Path) -> None:
    reader = open_reader(workdir, None)
    assert reader is not None
    with pytest.raises(corral.CorralError, match="no run matches 'nope'"):
        reader.get_run("nope")
    with pytest.raises(corral.CorralError, match="matches several runs"):
        reader.get_run("2")
    with pytest.raises(corral.CorralError, match="no run matches"):
        reader.get_run("%")  # a LIKE wildcard is a character of an id, not "anything"
    reader.close()


def test_converted_columns_are_the_schemas() -> None:
    for table in (t.runs, t.tasks, t.attempts, t.task_summary):
        json_cols = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
        bool_cols = {c.name for c in table.columns if isinstance(c.type, sa.Boolean)}
        assert JSON_COLUMNS[table.name] == json_cols
        assert BOOLEAN_COLUMNS[table.name] == bool_cols


def test_the_full_store_is_used_when_the_reader_cannot_be(workdir: Path, tmp_path: Path) -> None:
    assert open_reader(workdir, f"sqlite:///{workdir / '.corral' / 'state.db'}") is None  # --db
    assert open_reader(tmp_path, None) is None  # no store yet: inspection never creates one
    old = tmp_path / "old"
    Store.open(old).close()
    with sqlite3.connect(old / ".corral" / "state.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    assert open_reader(old, None) is None  # the full store migrates it first


def test_cli_runs_and_status_do_not_import_sqlalchemy(workdir: Path) -> None:
    probe = ("import sys, runpy; sys.argv = ['corral', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('corral', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('SQLA' if 'sqlalchemy' in sys.modules else 'NOSQLA', code)")
    # an ended run's tasks grouped (more than --limit), or a page of them, read its summary
    for args in (["runs"], ["status", "latest", "--json"], ["status", "latest", "--limit", "2"],
                 ["status", "latest", "--offset", "1", "--limit", "2"]):
        out = subprocess.run([sys.executable, "-c", probe, *args, "-C", str(workdir)],  # noqa: S603
                             capture_output=True, text=True, check=True).stdout
        assert out.split()[-2:] in (["NOSQLA", "0"], ["NOSQLA", "None"]), out
    first = Store.open(workdir).list_runs(10)[-1]["id"]
    out = subprocess.run([sys.executable, "-m", "corral", "status", first, "-C", str(workdir)],  # noqa: S603
                         capture_output=True, text=True, check=True).stdout
    assert "succeeded" in out and first in out
