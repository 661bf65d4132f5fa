"""The state store: SQLite by default, migrations at head, PostgreSQL end to end."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

import corral
from corral.errors import StoreError
from corral.store import Store, default_url
from corral.store.store import HEAD_REVISION

from .corehelp import Helper

PIPE = '''
from corral import task, pipeline, shell, each

@task
def sq(x: int) -> int:
    return x * x

@task
def total(xs: list) -> int:
    return sum(xs)

@task
def listing(n: int) -> list:
    return list(range(n))

@pipeline
def small(n: int = 4):
    a = total(sq.map(x=range(n)))
    b = total(sq.map(x=each(listing(n))))
    s = shell("echo {params.v} > {output}", outputs="out.txt", params={"v": a}, name="write")
    return a, b, s
'''

TABLES = {"runs", "tasks", "attempts", "results", "artifacts", "edges", "alembic_version"}


def test_sqlite_default_location_and_migrations(helper: Helper) -> None:
    r = helper.run(helper.load(PIPE))
    assert r.ok, r.errors
    db = helper.workdir / ".corral" / "state.db"
    assert db.is_file()
    assert r.store.url == default_url(helper.workdir) == f"sqlite:///{db}"
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert TABLES <= names
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (HEAD_REVISION,)]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # reopening an up-to-date store does not migrate again, and sees the run
    again = Store.open(helper.workdir)
    assert again.get_run(r.run_id[:12])["state"] == "succeeded"
    assert again.get_run("latest")["id"] == r.run_id
    again.close()


def test_client_queries_runs_and_results(helper: Helper) -> None:
    r = helper.run(helper.load(PIPE), {"n": 3})
    client = corral.Client(helper.workdir)
    assert [run["id"] for run in client.runs()] == [r.run_id]
    handle = client.run(r.run_id)
    assert handle.state.value == "succeeded"
    assert handle.task_result("total") == 5
    assert handle.task_result("sq~1[*]") == [0, 1, 4]
    assert {t["name"] for t in handle.tasks()} >= {"total", "total~1", "write"}
    assert len(handle.attempts()) == len({a["task_id"] for a in handle.attempts()})
    with pytest.raises(corral.CorralError, match="no run matches"):
        client.run("nonexistent")


def test_large_results_go_to_the_cas(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import task, pipeline
        @task
        def big() -> bytes:
            return b"z" * 200_000
        @task
        def size(b: bytes) -> int:
            return len(b)
        @pipeline
        def large():
            return size(big())
    ''')
    r = helper.run(pipe)
    assert r.ok and r.value == 200_000
    key = helper.tasks(r.run_id)["big"]["key"]
    row = helper.store.result_row(key)
    assert row is not None and row["value"] is None and row["digest"]
    assert helper.store.cas.has(row["digest"])


def test_bad_database_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the state store.*check the --db URL"):
        Store.open(tmp_path, "postgresql+psycopg://nobody:secret@127.0.0.1:1/none")


# ---------------------------------------------------------------------------- PostgreSQL



@pytest.mark.postgres
def test_postgres_store_end_to_end(helper: Helper, pg_url: str) -> None:
    store = Store.open(helper.workdir, pg_url)
    try:
        assert store.engine.dialect.name == "postgresql"
        with store.engine.connect() as conn:
            names = set(sa.inspect(conn).get_table_names())
            assert TABLES <= names
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
                HEAD_REVISION)
    finally:
        store.close()
    pipe = helper.load(PIPE)
    r1 = helper.run(pipe, {"n": 4}, db=pg_url)
    assert r1.ok, r1.errors
    assert r1.value == (14, 14, Path("out.txt"))
    assert (helper.workdir / "out.txt").read_text().strip() == "14"
    assert not (helper.workdir / ".corral" / "state.db").exists(), "nothing went to SQLite"
    client = corral.Client(helper.workdir, db=pg_url)
    handle = client.run(r1.run_id)
    assert handle.state.value == "succeeded"
    assert all(a["state"] == "succeeded" and a["peak_rss"] for a in handle.attempts())
    assert handle.task_result("total~1") == 14
    # fully cached second run, then a change that reruns one branch
    r2 = helper.run(pipe, {"n": 4}, db=pg_url)
    assert r2.ok and client.run(r2.run_id).attempts() == []
    (helper.workdir / "out.txt").unlink()
    r3 = helper.run(pipe, {"n": 5}, db=pg_url)
    assert r3.ok and r3.value[0] == 30
    ran = {t["name"] for t in client.run(r3.run_id).tasks() if t["state"] == "succeeded"}
    assert "sq[4]" in ran and "sq[0]" not in ran
    # run control and locking work against PostgreSQL too
    with pytest.raises(corral.CorralError, match="already ended"):
        client.run(r3.run_id).pause()


def test_clean_spares_young_blobs_and_unfinished_runs(helper: Helper) -> None:
    """`corral clean` runs beside running pipelines: a blob written moments ago may be about to
    be recorded, and a run that is not finished may still resume."""
    import os
    import time

    first = helper.run(helper.load(PIPE), {"n": 3})
    second = helper.run(helper.load(PIPE), {"n": 5})
    assert first.ok and second.ok
    store = helper.store
    orphan = store.cas.put_bytes(b"written by a task whose row is not committed yet")
    assert store.collect_garbage()["blobs"] == 0  # too young
    assert store.cas.has(orphan)
    old = time.time() - 7200
    os.utime(store.cas.path(orphan), (old, old))
    assert store.cas.put_bytes(b"written by a task whose row is not committed yet") == orphan
    assert store.collect_garbage()["blobs"] == 0  # reused just now: young again
    os.utime(store.cas.path(orphan), (old, old))
    assert store.collect_garbage()["blobs"] == 1 and not store.cas.has(orphan)

    with sqlite3.connect(helper.workdir / ".corral" / "state.db") as db:  # as a killed engine
        db.execute("UPDATE runs SET state = 'interrupted' WHERE id = ?", (first.run_id,))
    # older, but may still resume
    store.collect_garbage(keep_runs=1, min_age=0)
    assert {r["id"] for r in store.list_runs(10)} == {first.run_id, second.run_id}
    store.update_run(first.run_id, state="failed")
    store.collect_garbage(keep_runs=1, min_age=0)
    assert {r["id"] for r in store.list_runs(10)} == {second.run_id}
