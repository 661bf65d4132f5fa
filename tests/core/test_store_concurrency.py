"""The state store under concurrency and faults: engines that start at once on a fresh store
(SQLite and PostgreSQL), a schema newer than the code, a lost connection replayed, and the
PostgreSQL server stopped in the middle of a run (``postgres``; it is always started again)."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import corral
import corral.store.migrate as migrate
from corral.errors import StoreError, UsageError
from corral.store import Store
from corral.store import schema as t
from corral.store.outage import OUTAGE_LIMIT_ENV, outage_limit
from corral.store.version import HEAD_REVISION

from .corehelp import need, pg_schema, pg_url, wait_for

ROOT = Path(__file__).resolve().parents[2]
ENGINES, ROUNDS = 8, 10  # 80 engines on a fresh store per database; the suite has a time budget

TINY = '''
from corral import pipeline, task

@task
def square(i: int) -> int:
    return i * i

@pipeline
def tiny(i: int = 1) -> int:
    return square(i)
'''

SLOW = '''
import time
from corral import pipeline, task

@task
def step(i: int, log: str) -> int:
    time.sleep(3.0 if i in (4, 5) else 0.4)  # 4 and 5 are surely running when the server stops
    with open(log, "a") as fh:  # which tasks really ran, and how often
        fh.write(f"{i}\\n")
    return i

@task
def total(parts: list[int]) -> int:
    return sum(parts)

@pipeline
def slow(log: str, n: int = 40) -> int:
    return total(step.map(i=range(n), log=log))
'''


# ---------------------------------------------------------------------------- helpers


def _engine(pipe_file: Path, workdir: Path, db: str | None, i: int, gate: Any,
            out: Any) -> None:
    """One engine (a forked process): load the pipeline, wait for the others, run."""
    try:
        pipe = corral.load_pipeline(pipe_file, None)
        gate.wait(timeout=60)
        result = corral.run(pipe, {"i": i}, workdir=workdir, db=db, jobs=1)
        out.put((i, result.state.value, result.value))
    except BaseException as exc:  # reported to the test, which names it
        out.put((i, "error", f"{type(exc).__name__}: {exc}"))


def _engines_at_once(pipe_file: Path, workdir: Path, db: str | None) -> list[tuple[Any, ...]]:
    """:data:`ENGINES` engines that open the same fresh store at the same moment."""
    ctx = mp.get_context("fork")
    gate, out = ctx.Barrier(ENGINES), ctx.Queue()
    procs = [ctx.Process(target=_engine, args=(pipe_file, workdir, db, i, gate, out))
             for i in range(ENGINES)]
    for p in procs:
        p.start()
    results = []
    try:
        for _ in procs:
            results.append(out.get(timeout=120))
    except queue.Empty:
        pytest.fail(f"engines did not finish; got {results}")
    finally:
        for p in procs:
            p.join(timeout=30)
    return sorted(results)


def _race(tmp_path: Path, rounds: int, db_for_round: Any) -> None:
    pipe_file = tmp_path / "tiny.py"
    pipe_file.write_text(TINY)
    failed = []
    for r in range(rounds):
        workdir = tmp_path / f"wd{r}"
        workdir.mkdir()
        with db_for_round() as db:
            results = _engines_at_once(pipe_file, workdir, db)
            if results != [(i, "succeeded", i * i) for i in range(ENGINES)]:
                failed.append((r, [x for x in results if x[1] != "succeeded"][:2]))
                continue
            store = Store.open(workdir, db)
            try:
                assert len(store.list_runs()) == ENGINES
                assert migrate.current_version(store.engine) == migrate.HEAD_REVISION
            finally:
                store.close()
    assert not failed, f"{len(failed)} of {rounds} rounds failed: {failed[:3]}"


@contextmanager
def _no_db() -> Iterator[None]:
    yield None


# ---------------------------------------------------------------------------- first use


def test_engines_at_once_on_a_fresh_sqlite_store(tmp_path: Path) -> None:
    _race(tmp_path, ROUNDS, _no_db)


def test_a_fresh_sqlite_file_another_engine_writes_is_waited_for(tmp_path: Path) -> None:
    """The race behind a rare "database is locked" of the test above, made certain: another
    engine holds the write lock of a fresh file while this one switches it to WAL. SQLite
    answers that switch "locked" at once, busy timeout or not; the store waits and opens."""
    db = tmp_path / ".corral" / "state.db"
    db.parent.mkdir()
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.5, other.execute, ("COMMIT",))
    release.start()
    try:
        started = time.monotonic()
        store = Store.open(tmp_path)
        try:
            assert time.monotonic() - started >= 0.4  # it did wait for the other's lock
            assert migrate.current_version(store.engine) == migrate.HEAD_REVISION
            assert store.list_runs() == []
        finally:
            store.close()
    finally:
        release.join()
        other.close()
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


@pytest.mark.postgres
def test_engines_at_once_on_a_fresh_postgres_schema(tmp_path: Path) -> None:
    url = pg_url()
    _race(tmp_path, ROUNDS, lambda: pg_schema(url, "race"))


def test_a_current_schema_is_not_migrated_again(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path).close()

    def no_upgrade(*args: Any) -> None:
        raise AssertionError("a current schema went through the locked path")

    monkeypatch.setattr(migrate, "_upgrade", no_upgrade)
    monkeypatch.setattr(migrate, "_file_lock", no_upgrade)
    Store.open(tmp_path).close()


def test_a_newer_schema_is_one_line_naming_both_versions(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    db = sa.create_engine(f"sqlite:///{tmp_path / '.corral' / 'state.db'}")
    with db.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0042'"))
    db.dispose()
    with pytest.raises(StoreError, match=r"schema version 0042, newer than this Corral knows "
                                         rf"\(its newest is {HEAD_REVISION}\); upgrade Corral"):
        Store.open(tmp_path)
    cli = subprocess.run([sys.executable, "-m", "corral", "runs"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 4
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and "0042" in lines[0] and "upgrade Corral" in lines[0], lines


# ---------------------------------------------------------------------------- lost connections


def test_outage_limit_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OUTAGE_LIMIT_ENV, raising=False)
    assert outage_limit() == 300
    monkeypatch.setenv(OUTAGE_LIMIT_ENV, "12.5")
    assert outage_limit() == 12.5
    monkeypatch.setenv(OUTAGE_LIMIT_ENV, "soon")
    with pytest.raises(UsageError, match=f"{OUTAGE_LIMIT_ENV}='soon' is not a number"):
        outage_limit()


def _result_row(key: str) -> dict[str, Any]:
    return {"key": key, "task_name": "t", "run_id": "r", "created_at": 0.0, "size": 0}


@pytest.mark.postgres
def test_a_transaction_survives_its_connection_being_killed(tmp_path: Path) -> None:
    with pg_schema(pg_url(), "race") as url:
        store = Store.open(tmp_path, url)
        admin = sa.create_engine(url)
        try:
            with store.transaction() as c:
                c.execute(t.results.insert(), [_result_row("a")])
                pid = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
                with admin.begin() as a:
                    assert a.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
                c.execute(t.results.insert(), [_result_row("b")])  # reconnects, replays "a"
                assert c.execute(sa.text("SELECT pg_backend_pid()")).scalar() != pid
            with store.transaction() as c:
                pid = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
                c.execute(t.results.insert(), [_result_row("c")])
                with admin.begin() as a:
                    a.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            # the commit found the connection gone: replayed on a new one, then committed
            with admin.connect() as a:
                keys = sorted(a.execute(sa.text("SELECT key FROM results")).scalars())
            assert keys == ["a", "b", "c"]
        finally:
            store.close()
            admin.dispose()


@pytest.mark.postgres
def test_an_outage_past_the_limit_is_one_store_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(OUTAGE_LIMIT_ENV, "0.6")
    with pg_schema(pg_url(), "race") as url:
        store = Store.open(tmp_path, url)
        try:
            def refused() -> Any:
                raise sa.exc.OperationalError("connect", {}, Exception("connection refused"))

            monkeypatch.setattr(store.engine, "connect", refused)
            started = time.monotonic()
            with pytest.raises(StoreError, match=r"unreachable for \d+ s \(limit 0.6 s, "
                                                 f"{OUTAGE_LIMIT_ENV}\\): connection refused; "
                                                 "run the same command again"):
                store.update_run("x", state="running")
            assert 0.6 <= time.monotonic() - started < 3
            started = time.monotonic()  # the clean-up after the error does not wait again
            with pytest.raises(StoreError):
                store.list_runs()
            assert time.monotonic() - started < 0.3
            monkeypatch.undo()
            assert store.list_runs() == []  # back: the store works again
        finally:
            store.close()


# ---------------------------------------------------------------------------- server stopped


def _cluster() -> list[str]:
    try:
        version, name = Path("/run/corral-rig/postgres/cluster").read_text().split()
    except (OSError, ValueError):
        need(False, "the rig's PostgreSQL cluster is unknown (/run/corral-rig/postgres/cluster)")
        raise
    return [version, name]


def _pg_ctl(action: str) -> None:
    if action == "start":  # the rig's script: also records the new postmaster's pid
        cmd = [str(ROOT / "scripts" / "rig" / "start-postgres.sh")]
    else:
        cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", *_cluster(), "stop", "-m", "fast"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)  # noqa: S603


@pytest.fixture
def pg_server() -> Iterator[Any]:
    """Stops and starts the rig's PostgreSQL; it is running again after the test, whatever
    happened (other tests use it)."""
    pg_url()
    if os.geteuid() != 0:
        pytest.skip("needs root to stop and start the rig's PostgreSQL")
    _cluster()
    try:
        yield _pg_ctl
    finally:
        _pg_ctl("start")


def _corral_run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "corral", "run", *args], cwd=cwd,  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def _ran(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.postgres
def test_postgres_restarted_mid_run_the_run_finishes(tmp_path: Path, pg_server: Any) -> None:
    log = tmp_path / "ran.log"
    (tmp_path / "slow.py").write_text(SLOW)
    with pg_schema(pg_url(), "race") as url:
        run = _corral_run(["slow.py", "--log", str(log), "-j", "2", "-q", "--db", url],
                          tmp_path, {OUTAGE_LIMIT_ENV: "60"})
        try:
            wait_for(lambda: len(_ran(log)) >= 4, timeout=60, what="some tasks to finish")
            pg_server("stop")
            stopped = len(_ran(log))
            time.sleep(5)  # tasks 4 and 5 (3 s each) end during the outage
            during = len(_ran(log))
            pg_server("start")
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
        assert run.returncode == 0, err
        assert "result: 780" in out
        assert "is unreachable" in err and "is back after" in err, err
        ran = _ran(log)
        assert during > stopped, "the tasks running when the server stopped did not go on"
        assert sorted(ran, key=int) == [str(i) for i in range(40)], ran  # each task ran once


@pytest.mark.postgres
def test_postgres_away_past_the_limit_stops_and_the_same_command_resumes(
    tmp_path: Path, pg_server: Any,
) -> None:
    log = tmp_path / "ran.log"
    (tmp_path / "slow.py").write_text(SLOW)
    with pg_schema(pg_url(), "race") as url:
        args = ["slow.py", "--log", str(log), "-j", "2", "-q", "--db", url, "--n", "16"]
        run = _corral_run(args, tmp_path, {OUTAGE_LIMIT_ENV: "2"})
        try:
            wait_for(lambda: len(_ran(log)) >= 4, timeout=60, what="some tasks to finish")
            pg_server("stop")
            out, err = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
            pg_server("start")
        assert run.returncode == 4, (out, err)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "unreachable for" in errors[0], err
        assert "run the same command again" in errors[0]
        admin = sa.create_engine(url)
        try:
            with admin.connect() as a:
                kept = set(a.execute(sa.text(
                    "SELECT name FROM tasks WHERE state = 'succeeded' AND name LIKE 'step%'"
                )).scalars())
        finally:
            admin.dispose()
        assert kept, "nothing was committed before the server stopped"
        first = _ran(log)
        again = _corral_run(args, tmp_path, {})
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert "result: 120" in out
        rerun = _ran(log)[len(first):]
        assert not {f"step[{i}]" for i in rerun} & kept, (kept, rerun)  # committed not redone
        assert sorted(set(first) | set(rerun), key=int) == [str(i) for i in range(16)]
