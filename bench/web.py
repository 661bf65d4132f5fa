"""Server time of the dashboard's pages with many runs and jobs in the database.

    python bench/web.py                       # 10,000 runs and 10,000 gateway jobs, 30 requests each
    python bench/web.py --runs 500 --jobs 200 --repeat 5   # a smoke test
    python bench/web.py --markdown            # a markdown table for docs/dashboard.md

A fresh working directory gets one real run (``corral run`` of a 200-element map and a gather,
on the local executor: the run page has a graph, a timeline and metrics to draw) and ``--runs``
more runs of 6 tasks each, inserted directly (states mixed, owners and pipelines varied); a
gateway database gets ``--jobs`` jobs of 20 users in 5 projects. Each page is requested
``--repeat`` times in-process (FastAPI's test client: the time is the server's, without a
network) after one warm-up request (an ended run's page is timed both drawn anew, its first
view, and again: the dashboard keeps an ended run's figures); the table shows the median, the 95th percentile and the
slowest. Goal (issue 15): p95 under 200 ms for the list and run pages.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = '''
from corral import pipeline, task

@task
def square(x: int) -> int:
    return x * x

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def squares(n: int = 200) -> int:
    return total(square.map(x=range(n)))
'''
STATES = ["succeeded", "succeeded", "succeeded", "failed", "cancelled", "running", "interrupted"]
GOAL_MS = 200.0


def fill_runs(wd: Path, n: int) -> str:
    """One real run, then ``n`` inserted ones; returns the real run's id."""
    (wd / "squares.py").write_text(PIPELINE)
    subprocess.run([sys.executable, "-m", "corral", "run", "squares.py", "-j", "2"],
                   cwd=wd, check=True, capture_output=True, timeout=600)
    from corral.store import Store
    from corral.store import schema as t

    store = Store.open(wd)
    real = str(store.get_run("latest")["id"])
    now = time.time() - n
    runs, tasks = [], []
    for i in range(n):
        run_id = f"20240101-{i:06d}-{uuid.uuid4().hex[:6]}"
        state = STATES[i % len(STATES)]
        created = now + i
        runs.append({"id": run_id, "identity": f"id{i % 300}", "pipeline": f"pipe{i % 40}",
                     "source": f"/data/p{i % 40}.py", "params": {"i": i}, "workdir": str(wd),
                     "executor": {"kind": "slurm" if i % 3 else "local"}, "state": state, "control": "none",
                     "owner": f"user{i % 20}", "created_at": created, "started_at": created,
                     "finished_at": None if state == "running" else created + 60, "n_tasks": 6})
        for j in range(6):
            tasks.append({"run_id": run_id, "idx": j, "name": f"t{j}", "grp": f"t{j}", "kind": "python",
                          "key": uuid.uuid4().hex, "state": "succeeded" if j < 4 else state,
                          "cached": j == 0, "attempts": 1})
    with store.transaction() as c:
        for k in range(0, len(runs), 2000):
            c.execute(t.runs.insert(), runs[k:k + 2000])
        for k in range(0, len(tasks), 5000):
            c.execute(t.tasks.insert(), tasks[k:k + 5000])
    store.close()
    return real


def fill_jobs(wd: Path, n: int) -> Any:
    """A gateway database with ``n`` queued jobs of 20 users; returns the admin's token."""
    from corral.gateway.store import GatewayStore, JobRequest, default_url

    store = GatewayStore(default_url(wd))
    for p in range(5):
        store.create_project(f"proj{p}", 1e9, members=[f"user{u}" for u in range(p, 20, 5)],
                             max_concurrent_jobs=n + 1)
    tokens = [store.create_token(f"user{u}") for u in range(20)]
    principals = [store.authenticate(tok) for tok in tokens]
    for i in range(n):
        store.submit(principals[i % 20], JobRequest(command=f"echo {i}", title=f"job {i}"))
    return store, tokens[0], store.create_token("root", admin=True)


def timed(get: Callable[[], Any], repeat: int) -> list[float]:
    response = get()  # warm-up: templates compiled, plotly.js loaded
    assert response.status_code == 200, (response.status_code, response.text[:300])
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = get()
        out.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200
    return out


def timed_call(call: Callable[[], Any], repeat: int) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def context_rows(wd: Path, run_id: str, repeat: int) -> list[tuple[str, list[float]]]:
    """The report's context of the real run with the run page's two figures and with all three
    (the HTML report's), interleaved so that both see the same load."""
    from corral.report import load_run, report_context
    from corral.report.metrics import compute_metrics
    from corral.store import Store
    from corral.web.views import SHOWN_FIGURES

    store = Store.open(wd)
    data = load_run(store, run_id)
    m = compute_metrics(data)
    page: list[float] = []
    full: list[float] = []
    for _ in range(repeat):
        page += timed_call(lambda: report_context(data, m, figures=SHOWN_FIGURES), 1)
        full += timed_call(lambda: report_context(data, m), 1)
    store.close()
    return [("report context of 201 tasks, the page's 2 figures", page),
            ("report context of 201 tasks, all 3 (the HTML report's)", full)]


def first_view(client: Any, run_id: str) -> Any:
    """The run page drawn anew: the dashboard keeps an ended run's figures after its first view."""
    from corral.web.views import ended_run_parts

    ended_run_parts.cache_clear()
    return client.get(f"/runs/{run_id}")


def login(client: Any, token: str) -> None:
    response = client.post("/login", data={"token": token, "next": "/jobs"}, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]


def measure(wd: Path, runs: int, jobs: int, repeat: int) -> list[tuple[str, list[float]]]:
    from fastapi.testclient import TestClient

    from corral.gateway.app import create_app as gateway_app
    from corral.gateway.settings import Settings
    from corral.web.app import create_app

    t0 = time.perf_counter()
    real = fill_runs(wd, runs)
    print(f"filled {runs + 1:,} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    ui = TestClient(create_app(wd))
    some = f"20240101-{runs // 2:06d}"
    far = min(100, runs // 50 + 1)
    rows = [
        (f"runs list, page 1 of {runs + 1:,} runs", timed(lambda: ui.get("/"), repeat)),
        (f"runs list, page {far}", timed(lambda: ui.get("/", params={"page": far}), repeat)),
        ("runs list, state + owner filter", timed(lambda: ui.get("/", params={"state": "failed", "owner": "user3"}),
                                                  repeat)),
        ("runs list, search", timed(lambda: ui.get("/", params={"q": "p17"}), repeat)),
        ("run page, real run of 201 tasks, first view", timed(lambda: first_view(ui, real), repeat)),
        ("run page, real run of 201 tasks, again", timed(lambda: ui.get(f"/runs/{real}"), repeat)),
        ("run page, a run of 6 tasks, first view", timed(lambda: first_view(ui, some), repeat)),
        *context_rows(wd, real, repeat),
    ]
    if jobs:
        gw = wd / "gateway"
        gw.mkdir()
        t0 = time.perf_counter()
        store, user, admin = fill_jobs(gw, jobs)
        print(f"filled {jobs:,} jobs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        app = gateway_app(Settings(workdir=gw, run_jobs=False), store=store)  # its pages at /
        with TestClient(app) as client:
            login(client, user)
            rows.append((f"gateway: a user's and their project's jobs ({jobs // 5:,})",
                         timed(lambda: client.get("/jobs"), repeat)))
            job = client.get("/jobs").text.split('data-job="', 1)[1].split('"', 1)[0]
            rows.append(("gateway: a job's page", timed(lambda: client.get(f"/jobs/{job}"), repeat)))
            login(client, admin)
            rows.append((f"gateway: all jobs ({jobs:,}), admin", timed(lambda: client.get("/admin/jobs"), repeat)))
            last = max(1, -(-jobs // 50))
            rows.append((f"gateway: all jobs, page {last}",
                         timed(lambda: client.get(f"/admin/jobs?page={last}"), repeat)))
        store.close()
    return rows


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.runs < 1 or args.repeat < 1 or args.jobs < 0:
        parser.error("--runs and --repeat must be at least 1, --jobs at least 0")
    os.environ.setdefault("CORRAL_NO_PROGRESS", "1")
    with tempfile.TemporaryDirectory(prefix="corral-bench-web-") as tmp:
        before = os.getloadavg()[0]
        rows = measure(Path(tmp), args.runs, args.jobs, args.repeat)
    load = f"load average {before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs"
    head = ("page", "median ms", "p95 ms", "max ms", f"p95 < {GOAL_MS:.0f} ms")
    table = [(name, f"{statistics.median(v):.1f}", f"{p95(v):.1f}", f"{max(v):.1f}",
              "yes" if p95(v) < GOAL_MS else "NO") for name, v in rows]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" for _ in head) + "|")
        for row in table:
            print("| " + " | ".join(row) + " |")
        print(f"\n({load})")
        return
    widths = [max(len(r[i]) for r in [head, *table]) for i in range(len(head))]
    for row in [head, *table]:
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(cells)))
    print(f"({load})")


if __name__ == "__main__":
    main()
