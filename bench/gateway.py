"""Requests per second and latency of the gateway: job status reads with many jobs in the database,
and job submissions.

    python bench/gateway.py                     # 10,000 jobs, 5,000 status reads, 500 submissions
    python bench/gateway.py --jobs 200 --reads 200 --submissions 50   # a smoke test
    python bench/gateway.py --markdown          # a markdown table for docs/gateway.md

Method: a fresh SQLite gateway database gets ``--jobs`` queued jobs of one user (through the
store's own ``submit``, each reserving core-hours in its transaction as the API does). Then a real
``corral gateway serve --no-run --rate-limit 0`` process listens on a free loopback port, and
``--clients`` threads, each with its own keep-alive HTTP connection, send ``GET /api/v1/jobs/{id}``
for random jobs of the user (``--reads`` in all), then ``POST /api/v1/jobs`` (``--submissions``
in all). Each request's latency is measured on the client (network on loopback, token check,
query, JSON); requests/s is the number of requests over the wall time of the phase. Client and
server share this machine's cores, so the numbers are a floor. Goal (issue 14): at least 1,000
status reads/s with p99 under 50 ms at 10,000 jobs.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
GOAL_RPS, GOAL_P99_MS = 1000.0, 50.0


def fill(workdir: Path, jobs: int) -> tuple[str, list[str], float]:
    """The user's token, its job ids, and the in-process submission rate (jobs/s)."""
    from corral.gateway.store import GatewayStore, JobRequest, default_url

    store = GatewayStore(default_url(workdir))
    store.create_project("bench", 1e12, members=["alice"], max_concurrent_jobs=10_000_000)
    token = store.create_token("alice")
    who = store.authenticate(token)
    start = time.perf_counter()
    ids = [str(store.submit(who, JobRequest(f"echo {i}", title=f"job {i}"))["id"]) for i in range(jobs)]
    rate = jobs / (time.perf_counter() - start)
    store.close()
    return token, ids, rate


def serve(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [sys.executable, "-m", "corral", "gateway", "serve", "-C", str(workdir), "--port", str(port),
            "--no-run", "--rate-limit", "0"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/ga4gh/tes/v1/service-info", timeout=1)
            return proc, url
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the gateway did not start") from None
            time.sleep(0.1)


def phase(url: str, token: str, clients: int, total: int,
          call: Callable[[httpx.Client, int], httpx.Response]) -> tuple[float, list[float]]:
    """``total`` requests over ``clients`` threads: (requests/s, latencies in ms)."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[str] = []

    def worker(k: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for i in range(k, total, clients):
                t0 = time.perf_counter()
                r = call(client, i)
                mine.append((time.perf_counter() - t0) * 1000)
                if r.status_code >= 300:
                    errors.append(f"{r.status_code} {r.text[:200]}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return total / elapsed, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000, help="jobs in the database")
    ap.add_argument("--reads", type=int, default=5_000, help="status reads in all")
    ap.add_argument("--submissions", type=int, default=500, help="submissions in all")
    ap.add_argument("--clients", type=int, default=8, help="client threads")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-gateway-") as tmp:
        workdir = Path(tmp)
        token, ids, fill_rate = fill(workdir, args.jobs)
        proc, url = serve(workdir)
        try:
            rng = random.Random(14)
            picks = [rng.choice(ids) for _ in range(args.reads)]
            phase(url, token, args.clients, min(200, args.reads), lambda c, i: c.get(f"/api/v1/jobs/{picks[i]}"))
            reads = phase(url, token, args.clients, args.reads, lambda c, i: c.get(f"/api/v1/jobs/{picks[i]}"))
            body = {"command": "echo hello", "walltime_hours": 0.1}
            subs = phase(url, token, args.clients, args.submissions, lambda c, i: c.post("/api/v1/jobs", json=body))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rows = [(f"GET /api/v1/jobs/{{id}} ({args.jobs:,} jobs in the database)", *reads),
            (f"POST /api/v1/jobs (after {args.jobs:,} jobs)", *subs)]
    print(f"# {os.cpu_count()} CPUs, {args.clients} client threads; in-process store.submit while filling: "
          f"{fill_rate:,.0f} jobs/s")
    head = ("request", "requests/s", "p50 ms", "p99 ms", "max ms")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|---:|---:|---:|---:|")
    else:
        print(f"{head[0]:<58} {head[1]:>11} {head[2]:>8} {head[3]:>8} {head[4]:>8}")
    for name, rps, lat in rows:
        cells = (f"{rps:,.0f}", f"{statistics.median(lat):.1f}", f"{pct(lat, 0.99):.1f}", f"{max(lat):.1f}")
        print("| " + " | ".join((name, *cells)) + " |" if args.markdown
              else f"{name:<58} {cells[0]:>11} {cells[1]:>8} {cells[2]:>8} {cells[3]:>8}")
    status_rps, status_p99 = reads[0], pct(reads[1], 0.99)
    verdict = "met" if status_rps >= GOAL_RPS and status_p99 < GOAL_P99_MS else "NOT met"
    print(f"goal (>= {GOAL_RPS:,.0f} status reads/s, p99 < {GOAL_P99_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
