"""Requests per second and latency of the gateway: job status reads with many jobs in the database,
and job submissions.

    python bench/gateway.py                     # 10,000 jobs, 5,000 status reads, 500 submissions
    python bench/gateway.py --jobs 200 --reads 200 --submissions 50   # a smoke test
    python bench/gateway.py --markdown          # a markdown table for docs/gateway.md
    python bench/gateway.py --client threads    # the former client: httpx threads in this process

Method: a fresh SQLite gateway database gets ``--jobs`` queued jobs of one user (through the
store's own ``submit``, each reserving core-hours in its transaction as the API does). Then a real
``corral gateway serve --no-run --rate-limit 0`` process (uvicorn, with httptools and uvloop when
installed, its access log on) listens on a free loopback port, and ``--clients`` client processes
send ``GET /api/v1/jobs/{id}`` for random jobs of the user (``--reads`` in all, after 200 to warm
up), then ``POST /api/v1/jobs`` (``--submissions`` in all). Each client process has one keep-alive
connection, builds its HTTP/1.1 requests beforehand and reads each response by its Content-Length,
about what ``wrk`` does: a seventh of the CPU per request of httpx clients (the ``client CPU`` column),
and the clients run on the same cores as the server. ``--client threads`` is the former method,
httpx clients in threads of this process: they used about as much CPU as the server. Each
request's latency is measured in its client (loopback network, token check, query, JSON);
requests/s is the number of requests over the wall time of the phase, from the moment every client
is connected and ready. The server's CPU time per request (user + system, from /proc) depends much
less on the machine's load than requests/s: it is the column to compare two versions by. Client
and server share this machine's cores (with whatever else runs), so requests/s is a floor. Goal
(issue 14): at least 1,000 status reads/s with p99 under 50 ms at 10,000 jobs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

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


Call = tuple[str, str, bytes | None]
"""One request: method, path and JSON body (or None)."""


def request_bytes(port: int, token: str, call: Call) -> bytes:
    """One HTTP/1.1 keep-alive request, ready to send."""
    method, path, body = call
    head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body or b'')}\r\n\r\n")
    return head.encode() + (body or b"")


def response(sock: socket.socket, pending: bytes) -> tuple[int, bytes, bytes]:
    """Read one response (its length given by Content-Length, as uvicorn gives it for JSON): its
    status, its body, and the bytes read past it."""
    while b"\r\n\r\n" not in pending:
        pending += sock.recv(65536) or b""
    head, rest = pending.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" not in fields:
        raise SystemExit(f"a response without Content-Length: {head[:300]!r}")
    length = int(fields["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the gateway closed the connection mid-response")
        rest += chunk
    return int(lines[0].split()[1]), rest[:length], rest[length:]


def client(port: int, token: str, calls: list[Call], start: Any, out: Any) -> None:
    """One client process: its own keep-alive connection, requests built beforehand, responses read
    by their Content-Length (about what ``wrk`` does, far less CPU than an HTTP library on the
    cores the server needs), the same start as every other client, then each call's latency in ms."""
    wire = [request_bytes(port, token, call) for call in calls]
    latencies, errors = [], []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        start.wait()
        cpu = time.process_time()
        for data, (method, path, _) in zip(wire, calls, strict=True):
            t0 = time.perf_counter()
            sock.sendall(data)
            status, body, pending = response(sock, pending)
            latencies.append((time.perf_counter() - t0) * 1000)
            if status >= 300:
                errors.append(f"{method} {path}: {status} {body[:200]!r}")
    out.put((latencies, errors, time.process_time() - cpu))


def thread_client(url: str, token: str, calls: list[Call], start: Any, out: Any) -> None:
    """The former method (``--client threads``): httpx in a thread of the benchmark's process."""
    latencies, errors = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as session:
        start.wait()
        for method, path, body in calls:
            t0 = time.perf_counter()
            r = session.request(method, path, content=body, headers={"Content-Type": "application/json"})
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code >= 300:
                errors.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
    out.put((latencies, errors, 0.0))  # threads: the whole process's CPU time is counted by phase()


def phase(url: str, token: str, clients: int, calls: list[Call], server: psutil.Process,
          kind: str = "processes") -> tuple[float, list[float], float, float]:
    """``calls`` spread over ``clients`` concurrent clients: (requests/s, latencies in ms, server
    and client CPU ms per request). The clock starts when every client is connected and ready."""
    if kind == "threads":
        start: Any = threading.Barrier(clients + 1)
        out: Any = queue.Queue()
        workers: list[Any] = [threading.Thread(target=thread_client, args=(url, token, calls[k::clients], start, out))
                              for k in range(clients)]
    else:
        ctx = multiprocessing.get_context("fork")
        start, out = ctx.Barrier(clients + 1), ctx.Queue()
        port = int(url.rsplit(":", 1)[1])
        workers = [ctx.Process(target=client, args=(port, token, calls[k::clients], start, out))
                   for k in range(clients)]
    for w in workers:
        w.start()
    start.wait()
    cpu0, mine0, t0 = sum(server.cpu_times()[:2]), time.process_time(), time.perf_counter()
    results = [out.get(timeout=600) for _ in workers]
    elapsed, cpu = time.perf_counter() - t0, sum(server.cpu_times()[:2]) - cpu0
    client_cpu = sum(r[2] for r in results) + (time.process_time() - mine0 if kind == "threads" else 0.0)
    for w in workers:
        w.join()
    errors = [e for r in results for e in r[1]]
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return (len(calls) / elapsed, [x for r in results for x in r[0]], cpu * 1000 / len(calls),
            client_cpu * 1000 / len(calls))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=10_000, help="jobs in the database")
    ap.add_argument("--reads", type=int, default=5_000, help="status reads in all")
    ap.add_argument("--submissions", type=int, default=500, help="submissions in all")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (each its own connection)")
    ap.add_argument("--client", choices=["processes", "threads"], default="processes",
                    help="client processes with http.client (default), or httpx threads (the former method)")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="corral-bench-gateway-") as tmp:
        workdir = Path(tmp)
        token, ids, fill_rate = fill(workdir, args.jobs)
        proc, url = serve(workdir)
        try:
            server = psutil.Process(proc.pid)
            rng = random.Random(14)
            reads: list[Call] = [("GET", f"/api/v1/jobs/{rng.choice(ids)}", None) for _ in range(args.reads)]
            phase(url, token, args.clients, reads[:200], server, args.client)  # warm-up
            status = phase(url, token, args.clients, reads, server, args.client)
            body = json.dumps({"command": "echo hello", "walltime_hours": 0.1}).encode()
            subs = phase(url, token, args.clients, [("POST", "/api/v1/jobs", body)] * args.submissions, server,
                         args.client)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    rows = [(f"GET /api/v1/jobs/{{id}} ({args.jobs:,} jobs in the database)", *status),
            (f"POST /api/v1/jobs (after {args.jobs:,} jobs)", *subs)]
    print(f"# {os.cpu_count()} CPUs, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
          f"{args.clients} client {args.client}; in-process store.submit while filling: {fill_rate:,.0f} jobs/s")
    head = ("request", "requests/s", "p50 ms", "p99 ms", "max ms", "server CPU ms/request", "client CPU ms/request")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print(f"{head[0]:<58} " + " ".join(f"{h:>{max(8, len(h))}}" for h in head[1:]))
    for name, rps, lat, cpu, client_cpu in rows:
        cells = (f"{rps:,.0f}", f"{statistics.median(lat):.1f}", f"{pct(lat, 0.99):.1f}", f"{max(lat):.1f}",
                 f"{cpu:.2f}", f"{client_cpu:.2f}")
        print("| " + " | ".join((name, *cells)) + " |" if args.markdown
              else f"{name:<58} " + " ".join(f"{c:>{max(8, len(h))}}" for c, h in zip(cells, head[1:], strict=True)))
    status_rps, status_p99 = status[0], pct(status[1], 0.99)
    verdict = "met" if status_rps >= GOAL_RPS and status_p99 < GOAL_P99_MS else "NOT met"
    print(f"goal (>= {GOAL_RPS:,.0f} status reads/s, p99 < {GOAL_P99_MS:.0f} ms): {verdict}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
