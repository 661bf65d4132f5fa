"""Kill -9 of the engine, then the same command again: the run resumes where it stopped."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from .corehelp import wait_for

PIPE = '''
import hashlib
import time
from pathlib import Path
from corral import task, pipeline

@task
def make(i: int) -> Path:
    time.sleep(0.3)
    out = Path("out") / f"part{i:02d}.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(hashlib.sha256(str(i).encode()).hexdigest() * (i + 1) + "\\n")
    return out

@task
def combine(parts: list) -> Path:
    out = Path("out") / "all.txt"
    out.write_text("".join(Path(p).read_text() for p in parts))
    return out

@pipeline
def many(n: int = 30):
    return combine(make.map(i=list(range(n))))
'''

SCRIPT = '''
import sys, corral
pipe = corral.load_pipeline(sys.argv[1])
r = corral.run(pipe, {}, jobs=2, workdir=sys.argv[2], source=sys.argv[1], on_note=print)
print("RESULT", r.run_id, r.state.value, flush=True)
'''


def _engine(pipe: Path, workdir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", SCRIPT, str(pipe), str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _query(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (none before the tables exist); SQLite values are typed at run time."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []  # tables not created yet


def _outputs(workdir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((workdir / "out").iterdir())}


def test_kill_9_then_resume(tmp_path: Path) -> None:
    pipe = tmp_path / "many.py"
    pipe.write_text(PIPE)
    work = tmp_path / "work"
    work.mkdir()
    db = work / ".corral" / "state.db"

    first = _engine(pipe, work)
    try:
        def five_done() -> bool:
            if first.poll() is not None:
                out, err = first.communicate()
                pytest.fail(f"the engine ended early ({first.returncode}):\n{out}{err}")
            rows = _query(db, "SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            return bool(rows) and int(rows[0][0]) >= 5  # type: ignore[call-overload]

        try:
            wait_for(five_done, timeout=60, what="some tasks to succeed")
        except pytest.fail.Exception:
            os.killpg(first.pid, signal.SIGKILL)
            out, err = first.communicate()
            states = _query(db, "SELECT state, COUNT(*) FROM tasks GROUP BY state")
            pytest.fail(f"no 5 tasks done in 60 s; tasks {states}; engine output:\n{out}{err}")
        engine = psutil.Process(first.pid)
        descendants = engine.children(recursive=True)
        assert descendants, "the engine has pool workers"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.time()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == -signal.SIGKILL

    def orphans() -> list[psutil.Process]:
        return [p for p in descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    try:
        wait_for(lambda: not orphans(), timeout=15, what="pool workers to exit")
    finally:
        for p in orphans():
            p.kill()

    (run_id, state, pid), = _query(db, "SELECT id, state, engine_pid FROM runs")
    assert state == "running" and pid == first.pid, "the dead engine still holds the lock"
    done_before = {name for (name,) in _query(
        db, "SELECT name FROM tasks WHERE state = 'succeeded'")}
    assert 5 <= len(done_before) < 31

    second = _engine(pipe, work)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert f"RESULT {run_id} succeeded" in out, out + err
    assert f"resuming run {run_id}" in out
    assert f"took over run {run_id} from a dead engine (pid {first.pid}" in out

    assert _query(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    rerun = _query(db, """SELECT t.name FROM attempts a JOIN tasks t ON t.id = a.task_id
                          WHERE a.submitted_at > ?""", killed_at)
    assert not done_before & {name for (name,) in rerun}, "a finished task ran again"
    assert {name for (name,) in rerun} | done_before == {f"make[{i}]" for i in range(30)} | {
        "combine"}
    states = _query(db, "SELECT state, COUNT(*) FROM tasks GROUP BY state")
    assert dict(states) == {"succeeded": 31}
    (run_state, engine_pid), = _query(db, "SELECT state, engine_pid FROM runs")
    assert run_state == "succeeded" and engine_pid is None

    reference = tmp_path / "reference"
    reference.mkdir()
    clean = _engine(pipe, reference)
    out, err = clean.communicate(timeout=120)
    assert clean.returncode == 0 and "succeeded" in out, err
    assert _outputs(work) == _outputs(reference)
    assert len(_outputs(work)) == 31


@pytest.mark.parametrize("alive", [False, True], ids=["dead", "live"])
def test_stale_lock_taken_over_live_lock_refused(tmp_path: Path, alive: bool) -> None:
    from corral.errors import RunLockedError
    from corral.store import Store

    store = Store.open(tmp_path)
    store.create_run({
        "id": "r1", "identity": "x", "pipeline": "p", "source": "s", "params": {},
        "workdir": str(tmp_path), "executor": {}, "state": "running", "control": "none",
        "owner": "", "created_at": time.time(), "n_tasks": 0,
    })
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        if not alive:
            holder.kill()
            holder.wait()
        import socket

        store.update_run("r1", engine_pid=holder.pid, engine_host=socket.gethostname(),
                         heartbeat_at=time.time())
        if alive:
            with pytest.raises(RunLockedError, match=f"engine pid {holder.pid}"):
                store.claim_run("r1")
            # another host's engine with a fresh heartbeat is also alive
            store.update_run("r1", engine_host="elsewhere", engine_pid=1)
            with pytest.raises(RunLockedError):
                store.claim_run("r1")
            # ... but not once its heartbeat is stale
            store.update_run("r1", heartbeat_at=time.time() - 3600)
            assert "took over run r1" in (store.claim_run("r1") or "")
        else:
            note = store.claim_run("r1")
            assert note is not None and f"pid {holder.pid}" in note
            assert store.get_run("r1")["engine_pid"] == os.getpid()
            assert store.claim_run("r1") is None, "claiming one's own run again is silent"
    finally:
        holder.kill()
        holder.wait()
        store.close()
