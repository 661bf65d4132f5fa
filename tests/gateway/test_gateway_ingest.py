"""Metrics ingestion: a real ``corral run --report-to`` subprocess reports to a real gateway on
loopback (uvicorn); the run shows up with its state, counts and per-task metrics to its owner and
its project's members, not to another user; a gateway that is down costs one warning line and the
run still succeeds. Reports are idempotent, never move an ended run back, and are bounded (413).
The g0005 migration upgrades a g0004 database on SQLite and the rig's PostgreSQL."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from corral.cli.report_to import TIMEOUT as REPORT_TIMEOUT
from corral.cli.report_to import Reporter
from corral.engine.progress import Progress
from corral.gateway.store import GatewayStore, default_url
from corral.gateway.store.ingest import MAX_TASKS_PER_REPORT
from corral.gateway.store.migrate import HEAD_REVISION, MIGRATIONS, current_version
from corral.states import RunState, TaskState

from .conftest import Gateway

PIPELINE = '''
from corral import pipeline, task

@task
def square(x: int) -> int:
    return x * x

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def squares(n: int = 3) -> int:
    return total(square.map(x=range(n)))
'''

WAITING = '''
import time
from pathlib import Path
from corral import pipeline, task

@task
def wait_for(path: str) -> int:
    deadline = time.monotonic() + 20
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 1

@pipeline
def waiting(path: str) -> int:
    return wait_for(path)
'''


def _argv(tmp_path: Path, source: str, *args: str, token: str | None = None) -> tuple[list[str], dict[str, str]]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    (work / "pipe.py").write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CORRAL_REPORT_TOKEN"}
    if token is not None:
        env["CORRAL_REPORT_TOKEN"] = token
    return [sys.executable, "-m", "corral", "run", str(work / "pipe.py"), "-C", str(work), "--json", *args], env


def _corral_run(tmp_path: Path, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    argv, env = _argv(tmp_path, PIPELINE, "--n", "3", *args, token=token)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)  # noqa: S603


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_reported_run_shows_up_with_its_state_counts_and_task_metrics(
        server: str, store: GatewayStore, tmp_path: Path) -> None:
    store.create_project("lab", 100.0, members=["alice", "bob"])
    alice, bob, carol = store.create_token("alice"), store.create_token("bob"), store.create_token("carol")
    proc = _corral_run(tmp_path, "--report-to", server, "--report-project", "lab", token=alice)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    run_id = json.loads(proc.stdout)["run"]

    def get(token: str, path: str) -> httpx.Response:
        return httpx.get(f"{server}/api/v1/{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10)

    report: dict[str, Any] = get(alice, f"reports/{run_id}").json()
    assert (report["state"], report["owner"], report["project"], report["pipeline"], report["executor"]) == (
        "succeeded", "alice", "lab", "squares", "local")
    assert report["counts"] == {"succeeded": 4} and report["ended_state"] and report["ended"] is not None
    tasks = {t["name"]: t for t in report["tasks"]}
    assert len(tasks) == 4 and {t["state"] for t in tasks.values()} == {"succeeded"}
    for t in tasks.values():
        assert t["attempts"] == 1 and t["wall"] is not None and t["wall"] >= 0 and t["host"], t
    assert get(bob, f"reports/{run_id}").json()["run_id"] == run_id  # a member of the run's project
    assert get(carol, f"reports/{run_id}").status_code == 404  # another user: as if it did not exist
    assert get(carol, "reports").json()["total"] == 0
    assert [r["run_id"] for r in get(bob, "reports").json()["items"]] == [run_id]


def test_a_gateway_that_is_down_costs_one_warning_line_and_the_run_succeeds(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{_free_port()}"
    proc = _corral_run(tmp_path, "--report-to", down, "--token", "crl_nothing")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "succeeded"
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and f"not reporting to {down}" in warnings[0], proc.stderr


def test_a_refused_report_costs_one_warning_line_and_the_run_succeeds(server: str, tmp_path: Path) -> None:
    proc = _corral_run(tmp_path, "--report-to", server, token="crl_not_a_token")
    assert proc.returncode == 0 and json.loads(proc.stdout)["state"] == "succeeded", proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "refused the report (401" in warnings[0], proc.stderr


def test_a_running_run_shows_its_progress_and_an_interrupted_one_ends_interrupted(
        server: str, store: GatewayStore, tmp_path: Path) -> None:
    alice = store.create_token("alice")
    release = tmp_path / "release"
    argv, env = _argv(tmp_path, WAITING, "--path", str(release), "--report-to", server, token=alice)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # noqa: S603
    try:
        deadline, seen = time.monotonic() + 30, None
        while seen is None or sum(seen["counts"].values()) != 1:  # the one task, as soon as the run starts
            assert time.monotonic() < deadline and proc.poll() is None, (seen, proc.communicate())
            time.sleep(0.2)
            items = httpx.get(f"{server}/api/v1/reports", headers={"Authorization": f"Bearer {alice}"},
                              timeout=10).json()["items"]
            seen = items[0] if items else None
        assert seen["state"] == "running" and seen["ended"] is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130 and "warning" not in err, err
    got = httpx.get(f"{server}/api/v1/reports/{seen['run_id']}", headers={"Authorization": f"Bearer {alice}"},
                    timeout=10).json()
    assert got["state"] == "interrupted" and not got["ended_state"], got


class _Counting(http.server.BaseHTTPRequestHandler):
    """A real HTTP server on loopback that counts the PUTs it answers (204)."""

    puts: list[float] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.puts.append(time.monotonic())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_progress_reports_are_throttled() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        reporter = Reporter(f"http://127.0.0.1:{srv.server_address[1]}", "crl_x", interval=0.5)
        reporter.start("r1", "p", "local")
        progress = Progress()
        assert not _Counting.puts  # nothing before the engine's first progress callback
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:  # 1.2 s of progress callbacks, thousands of them
            progress.count("t", None, TaskState.RUNNING)
            reporter.progress(progress)
            time.sleep(0.001)
        reporter.finish(RunState.SUCCEEDED)
    finally:
        srv.shutdown()
        srv.server_close()
    puts = _Counting.puts
    assert 2 <= len(puts) <= 5, puts  # start, at most one per 0.5 s, the final one
    gaps = [b - a for a, b in zip(puts[:-2], puts[1:-1], strict=True)]
    assert all(g >= 0.45 for g in gaps), gaps


def test_a_silent_gateway_delays_the_end_of_the_run_by_one_timeout_at_most(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        t0 = time.monotonic()
        proc = _corral_run(tmp_path, "--report-to", f"http://127.0.0.1:{silent.getsockname()[1]}", token="crl_x")
        elapsed = time.monotonic() - t0
    assert proc.returncode == 0 and json.loads(proc.stdout)["state"] == "succeeded", proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "does not answer" in warnings[0], proc.stderr
    assert elapsed < REPORT_TIMEOUT + 8, elapsed  # the run itself takes 1 to 2 s


def test_a_bad_url_or_no_token_is_a_usage_error_before_the_run(tmp_path: Path) -> None:
    proc = _corral_run(tmp_path, "--report-to", "ftp://127.0.0.1/x", token="crl_x")
    assert proc.returncode == 2 and "not an http:// or https:// URL" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stdout == ""
    proc = _corral_run(tmp_path, "--report-to", "http://127.0.0.1:1")
    assert proc.returncode == 2 and "CORRAL_REPORT_TOKEN" in proc.stderr, proc.stderr
    assert not (tmp_path / "work" / ".corral").exists()  # nothing ran


def _body(state: str, **extra: Any) -> dict[str, Any]:
    return {"pipeline": "p", "executor": "slurm", "state": state, "counts": {"running": 1, "pending": 1},
            "started": "2026-12-01T10:00:00Z", **extra}


def test_reports_are_idempotent_and_never_move_an_ended_run_back(gateway: Gateway) -> None:
    c, alice = gateway.client, gateway.auth(gateway.alice)
    task = {"name": "a", "state": "succeeded", "wall": 1.5, "cpu": 1.2, "peak_memory": 1000, "host": "n1",
            "exit_code": 0, "attempts": 1}
    first = c.put("/api/v1/reports/r1", json=_body("running", tasks=[task]), headers=alice)
    assert first.status_code == 200 and first.json()["changed"], first.text
    again = c.put("/api/v1/reports/r1", json=_body("running", tasks=[task]), headers=alice)
    assert again.status_code == 200 and not again.json()["changed"]
    assert again.json()["last_report"] == first.json()["last_report"]
    done = _body("failed", counts={"succeeded": 1, "failed": 1}, ended="2026-12-01T11:00:00Z")
    assert c.put("/api/v1/reports/r1", json=done, headers=alice).json()["state"] == "failed"
    late = c.put("/api/v1/reports/r1", json=_body("running"), headers=alice)  # a late progress report
    assert late.status_code == 200 and not late.json()["changed"]
    got = c.get("/api/v1/reports/r1", headers=alice).json()
    assert (got["state"], got["counts"], got["ended"]) == ("failed", {"failed": 1, "succeeded": 1},
                                                           "2026-12-01T11:00:00Z")
    assert got["tasks"] == [task]
    taken = c.put("/api/v1/reports/r1", json=_body("running"), headers=gateway.auth(gateway.bob))
    assert taken.status_code == 409  # another user's run id
    assert c.put("/api/v1/reports/r2", json=_body("running", project="nope"), headers=alice).status_code == 404


def test_reports_over_the_size_limits_answer_413(gateway: Gateway) -> None:
    c, alice = gateway.client, gateway.auth(gateway.alice)
    tasks = [{"name": f"t{i}", "state": "succeeded"} for i in range(MAX_TASKS_PER_REPORT + 1)]
    r = c.put("/api/v1/reports/big", json=_body("running", tasks=tasks), headers=alice)
    assert r.status_code == 413 and "send them in batches" in r.json()["detail"], r.text
    assert "\n" not in r.json()["detail"]
    huge = _body("running", tasks=[{"name": "x" * 300, "state": "succeeded", "host": "h" * 200}] * 5000)
    r = c.put("/api/v1/reports/big", content=json.dumps(huge), headers={**alice, "Content-Type": "application/json"})
    assert r.status_code == 413 and "bytes" in r.json()["detail"], r.text
    assert c.get("/api/v1/reports/big", headers=alice).status_code == 404  # nothing was recorded
    no_write = gateway.store.create_token("alice", ["jobs:read"])
    assert c.put("/api/v1/reports/r", json=_body("running"), headers=gateway.auth(no_write)).status_code == 403


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return default_url(tmp_path) if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_g0005_upgrades_a_g0004_database(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "g0004")
    assert current_version(engine) == "g0004"
    engine.dispose()
    store = GatewayStore(url)
    try:
        assert current_version(store.engine) == HEAD_REVISION  # g0005 and any later revision
        assert {"reported_runs", "reported_tasks"} <= set(sa.inspect(store.engine).get_table_names())
        from corral.gateway.store.ingest import RunReport, TaskReport
        from corral.states import RunState, TaskState

        who = store.authenticate(store.create_token("alice"))
        report = RunReport("r1", "p", "local", RunState.SUCCEEDED, {TaskState.SUCCEEDED: 1},
                           tasks=(TaskReport("a", TaskState.SUCCEEDED, wall=1.0, peak_memory=5 * 2**40),))
        assert store.report_run(who, report)["changed"] and not store.report_run(who, report)["changed"]
        assert store.get_report(who, "r1")["tasks"][0]["peak_memory"] == 5 * 2**40
    finally:
        store.close()


def test_concurrent_first_reports_of_a_run_make_one_run(url: str) -> None:
    """The client's progress thread and its final report may reach the gateway at once."""
    from concurrent.futures import ThreadPoolExecutor

    from corral.gateway.store.ingest import RunReport

    store = GatewayStore(url)
    try:
        who = store.authenticate(store.create_token("alice"))
        reports = [RunReport("same", "p", "local", state, {TaskState.PENDING: 1})
                   for state in [RunState.RUNNING] * 7 + [RunState.SUCCEEDED]]
        together = threading.Barrier(len(reports))

        def report(r: RunReport) -> dict[str, Any]:
            together.wait()
            return store.report_run(who, r)

        with ThreadPoolExecutor(len(reports)) as pool:
            results = list(pool.map(report, reports))
        assert len(results) == 8
        assert store.get_report(who, "same")["state"] == "succeeded"  # the ended state wins, whatever the order
        assert store.list_reports(who, limit=10, offset=0)[1] == 1
    finally:
        store.close()


def test_a_peak_memory_beyond_a_bigint_is_refused(server: str, store: GatewayStore) -> None:
    """Found by schemathesis: a task's peak memory over 2**63-1 reached SQLite (500); a 422 now."""
    alice = store.create_token("alice")
    body = {"pipeline": "p", "executor": "local", "state": "failed",
            "tasks": [{"name": "t", "state": "failed", "peak_memory": 2**77}]}
    got = httpx.put(f"{server}/api/v1/reports/r1", json=body,
                    headers={"Authorization": f"Bearer {alice}"}, timeout=10)
    assert got.status_code == 422, got.text
