"""An ended run's tasks by group (``task_summary``, issue 12 §5): what ``corral status`` reads
of a big run equals counting its rows; a re-checked run's task rows copied in SQL equal the rows
the engine writes; a store of the previous schema is upgraded."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import corral
from cli.test_status_big import PIPE  # the same failed run with maps, cached tasks
from corral.store import Store, queries
from corral.store.migrate import MIGRATIONS
from corral.store.reader import open_reader

NOT_COPIED = ("id", "run_id", "state", "cached", "attempts", "error", "started_at", "finished_at")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[Any]]:
    """Three failed runs: n=40; n=60 (reusing the first's results); n=60 again (``new``)."""
    wd = tmp_path_factory.mktemp("summary")
    (wd / "p.py").write_text(PIPE)
    pipe = corral.load_pipeline(wd / "p.py")
    copies: list[Any] = []
    write_tasks = Store.write_tasks

    def spy(self: Store, *args: Any, **kwargs: Any) -> None:
        copies.append(kwargs.get("copied", args[5] if len(args) > 5 else None))
        write_tasks(self, *args, **kwargs)

    ids = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Store, "write_tasks", spy)
        for n, new in ((40, False), (60, False), (60, True)):
            result = corral.run(pipe, {"n": n}, workdir=wd, jobs=2, new=new)
            assert result.state is corral.RunState.FAILED, result.errors
            ids.append(result.run_id)
    return wd, ids, copies


def _live(store: Store, run_id: str) -> list[dict[str, Any]]:
    with store.engine.connect() as c:
        return queries.task_groups(c, run_id)


def _summary(store: Store, run_id: str) -> list[dict[str, Any]] | None:
    with store.engine.connect() as c:
        return queries.summary(c, run_id)


def test_the_summary_is_what_counting_the_rows_gives(runs: tuple[Path, list[str], Any]) -> None:
    wd, ids, _ = runs
    store = Store.open(wd)
    reader = open_reader(wd, None)
    assert reader is not None
    try:
        for run_id in ids:
            groups = _summary(store, run_id)
            assert groups is not None, "an ended run is summarised"
            assert groups == _live(store, run_id) == store.task_groups(run_id)
            assert reader.task_groups(run_id) == groups
            rows = store.tasks(run_id)
            counts: Counter[str] = Counter()
            for g in groups:
                counts.update(g["states"])
            assert counts == Counter(r["state"] for r in rows)
            by_group = {g["name"]: g for g in groups}
            assert by_group["sq"]["n"] == len([r for r in rows if r["grp"] == "sq"])
            assert by_group["sq"]["tries"] == sum(r["attempts"] for r in rows if r["grp"] == "sq")
        second = {g["name"]: g["states"] for g in store.task_groups(ids[1])}
        # sq[0..39] reused from the first run but sq[7], sq[31], which fail again; sq[40..59] ran
        assert second["sq"] == {"cached": 38, "succeeded": 20, "failed": 2}
        assert second["cube"] == {"cached": 5} and second["one"] == {"cached": 1}
        for idxs, failed in (([0, 5, 6, 65], ["sq"]), ([1, 2], [])):
            assert reader.tasks_at(ids[1], idxs, failed) == store.tasks_at(ids[1], idxs, failed)
        for offset, limit in ((0, 10), (60, 10), (3, 0), (70, 5)):
            assert reader.task_page(ids[1], offset, limit) == store.task_page(ids[1], offset, limit)
        page, _ = store.task_page(ids[1], 60, 10)
        assert [r["idx"] for r in page] == list(range(60, 66))
    finally:
        reader.close()
        store.close()


def test_a_run_that_starts_again_is_counted_anew(runs: tuple[Path, list[str], Any],
                                                 tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    shutil.copytree(runs[0], wd)
    store = Store.open(wd)
    first = runs[1][0]
    store.update_run(first, state=corral.RunState.RUNNING.value)  # as a resume does
    assert _summary(store, first) is None
    assert store.task_groups(first) == _live(store, first)
    store.close()
    pipe = corral.load_pipeline(runs[0] / "p.py")  # the same file: the same run resumes
    result = corral.run(pipe, {"n": 40}, workdir=wd, jobs=2)
    assert result.run_id == first and result.state is corral.RunState.FAILED
    store = Store.open(wd)
    assert _summary(store, first) == _live(store, first)
    assert {g["name"]: g["states"] for g in store.task_groups(first)}["sq"] == {
        "succeeded": 38, "failed": 2}
    store.close()


def test_a_rechecked_runs_copied_rows_are_the_rows_the_engine_writes(
        runs: tuple[Path, list[str], list[Any]]) -> None:
    wd, ids, copies = runs
    assert copies[0] is None and copies[1] is None  # a first run; another identity
    source, copied = copies[2]
    assert source == ids[1] and len(copied) == 64  # all but sq[7], sq[31] and the gather
    store = Store.open(wd)
    try:
        before = {r["name"]: r for r in store.tasks(ids[1])}
        after = {r["name"]: r for r in store.tasks(ids[2])}
        assert set(after) == set(before)
        cached = [name for name, r in after.items() if r["cached"]]
        assert len(cached) == 64
        for name in cached:
            row = after[name]
            assert (row["state"], row["attempts"], row["error"], row["started_at"]) == (
                "cached", 0, None, None)
            assert {k: v for k, v in row.items() if k not in NOT_COPIED} == {
                k: v for k, v in before[name].items() if k not in NOT_COPIED}, name
        assert {after["sq[7]"]["state"], after["sq[31]"]["state"]} == {"failed"}
    finally:
        store.close()


def test_a_store_of_the_previous_schema_is_upgraded(runs: tuple[Path, list[str], Any],
                                                    tmp_path: Path) -> None:
    wd = tmp_path / "old"
    shutil.copytree(runs[0], wd)
    db = wd / ".corral" / "state.db"
    engine = sa.create_engine(f"sqlite:///{db}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    engine.dispose()
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "task_summary" not in tables
    assert open_reader(wd, None) is None  # not current: the full store upgrades it first
    store = Store.open(wd)
    try:
        second = runs[1][1]
        assert _summary(store, second) is None  # ended before summaries: counted live
        assert store.task_groups(second) == _live(store, second)
        assert {g["name"]: g["states"] for g in store.task_groups(second)}["sq"] == {
            "cached": 38, "succeeded": 20, "failed": 2}
    finally:
        store.close()
    reader = open_reader(wd, None)
    assert reader is not None and reader.task_groups(second) is None
    reader.close()



@pytest.mark.postgres
def test_summaries_and_copied_rows_on_postgres(pg_url: str, tmp_path: Path) -> None:
    (tmp_path / "p.py").write_text(PIPE)
    pipe = corral.load_pipeline(tmp_path / "p.py")
    ids = [corral.run(pipe, {"n": 20}, workdir=tmp_path, jobs=2, new=True, db=pg_url).run_id
           for _ in range(2)]
    store = Store.open(tmp_path, pg_url)
    try:
        for run_id in ids:
            assert _summary(store, run_id) == _live(store, run_id)
        assert {g["name"]: g["states"] for g in store.task_groups(ids[1])}["sq"] == {
            "cached": 19, "failed": 1}
        before = {r["name"]: r for r in store.tasks(ids[0])}
        for row in store.tasks(ids[1]):
            if row["cached"]:
                assert {k: v for k, v in row.items() if k not in NOT_COPIED} == {
                    k: v for k, v in before[row["name"]].items() if k not in NOT_COPIED}
        ran = before["sq[3]"]
        producer = store.producer_of_key(ran["key"])  # through the partial key index
        assert producer is not None and producer["id"] == ran["id"]
    finally:
        store.close()


def _key_index(store: Store) -> str:
    with store.engine.connect() as c:
        if c.dialect.name == "postgresql":
            q = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_tasks_key' " \
                "AND schemaname = current_schema()"
        else:
            q = "SELECT sql FROM sqlite_master WHERE name = 'ix_tasks_key'"
        return str(c.execute(sa.text(q)).scalar_one())


def test_the_key_index_is_partial_without_importing_postgresql(tmp_path: Path) -> None:
    """A fresh SQLite store's key index has its condition, and opening a store imports no
    PostgreSQL dialect (its condition there is added only when a PostgreSQL store is made)."""
    store = Store.open(tmp_path)
    try:
        assert "WHERE state = 'succeeded'" in _key_index(store)
    finally:
        store.close()
    code = ("import sys; from pathlib import Path; from corral.store import Store; "
            "Store.open(Path(sys.argv[1])).close(); "
            "print('sqlalchemy.dialects.postgresql' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,  # noqa: S603
                         text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


@pytest.mark.postgres
def test_a_fresh_postgres_store_has_the_partial_key_index(pg_url: str, tmp_path: Path) -> None:
    store = Store.open(tmp_path, pg_url)
    try:
        assert "WHERE" in _key_index(store) and "succeeded" in _key_index(store)
    finally:
        store.close()
