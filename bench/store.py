"""The state store under load: several engines at once on one store, with readers polling.

    python bench/store.py                          # SQLite: 8 engines x 5,000 tasks
    python bench/store.py --db postgresql+psycopg://corral:corral@127.0.0.1:5432/corral_test
    python bench/store.py --engines 4 --tasks 500  # smaller, a smoke test
    python bench/store.py --markdown               # a markdown table for docs/benchmarks.md

For each database (a fresh working directory for SQLite; a fresh schema, dropped afterwards, of
the PostgreSQL database given with ``--db``): one engine alone runs ``--tasks`` no-op tasks
(2 workers), then ``--engines`` engines run as many each at once, in one working directory and
one database, while ``corral status RUN --watch --interval 0.2`` follows one of the runs and a
reader lists the runs every 0.2 s (the code of ``corral runs``, in a loop in one process).

Each engine is this script in ``_engine`` mode: ``corral.run`` in-process, with the store's
write transactions timed (body plus commit, the engine's batched writes). Checked: every engine
succeeds, no output says "database is locked", every task succeeded with exactly one attempt.
Goal: the per-task cost with all engines at once (wall time / all tasks) within 2x of one
engine's alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
POLL = 0.2
PIPELINE = '''
from corral import pipeline, task

@task
def noop(i: int, engine: int) -> int:
    return i

@pipeline
def load(engine: int = 0, n: int = 100) -> list[int]:
    return noop.map(i=range(n), engine=engine)
'''


# ---------------------------------------------------------------------------- child modes

def engine_mode(ns: argparse.Namespace) -> int:
    """One engine: run the pipeline, write wall time, CPU time and transaction latencies."""
    import corral
    from corral.store import Store

    latencies: list[float] = []
    plain = Store.transaction

    @contextlib.contextmanager
    def timed(self: Store) -> Iterator[Any]:
        start = time.perf_counter()
        with plain(self) as conn:
            yield conn
        latencies.append(time.perf_counter() - start)

    setattr(Store, "transaction", timed)  # noqa: B010  # timing only, in this process
    pipe = corral.load_pipeline(Path(ns.pipeline), None)
    cpu, start = time.process_time(), time.perf_counter()
    result = corral.run(pipe, {"engine": ns.engine, "n": ns.tasks}, workdir=Path(ns.workdir),
                        db=ns.db or None, jobs=2)
    record = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu,
              "state": result.state.value, "errors": result.errors[:3], "latencies": latencies,
              "run_id": result.run_id}
    Path(ns.out).write_text(json.dumps(record))
    return 0 if result.ok else 1


def reader_mode(ns: argparse.Namespace) -> int:
    """``corral runs`` every 0.2 s until the stop file appears; prints polls and errors."""
    import click

    from corral.cli import status as cli_status

    polls, errors = 0, []
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        while not Path(ns.stop).exists():
            try:
                cli_status.runs(workdir=Path(ns.workdir), db=ns.db or None, as_json=True, limit=20,
                         compare=None)
            except (click.exceptions.Exit, SystemExit) as exc:
                errors.append(repr(exc))
            except Exception as exc:  # the benchmark reports any error, not only Corral's
                errors.append(f"{type(exc).__name__}: {exc}")
            polls += 1
            time.sleep(POLL)
    print(json.dumps({"polls": polls, "errors": errors[:5], "n_errors": len(errors)}))
    return 0


# ---------------------------------------------------------------------------- the benchmark

@dataclass
class Phase:
    engines: int
    tasks: int
    wall: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reader: dict[str, Any] = field(default_factory=dict)
    watch_rc: int | None = None

    @property
    def per_task_ms(self) -> float:
        return 1000 * self.wall / (self.engines * self.tasks)

    @property
    def throughput(self) -> float:
        return self.engines * self.tasks / self.wall

    def latency(self, q: float) -> float:
        lat = sorted(x for r in self.records for x in r["latencies"])
        return 1000 * lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan")

    @property
    def commits(self) -> int:
        return sum(len(r["latencies"]) for r in self.records)


def _script(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _corral(*args: str) -> list[str]:
    return [sys.executable, "-m", "corral", *args]


def run_phase(engines: int, tasks: int, db: str, base: Path, readers: bool) -> Phase:
    workdir = base / f"wd-{engines}"
    workdir.mkdir()
    pipe = base / "load.py"
    pipe.write_text(PIPELINE)
    phase = Phase(engines, tasks)
    outs = [base / f"engine-{engines}-{i}.json" for i in range(engines)]
    errs = [base / f"engine-{engines}-{i}.err" for i in range(engines)]
    start = time.perf_counter()
    procs = [subprocess.Popen(  # noqa: S603
        _script("_engine", "--pipeline", str(pipe), "--workdir", str(workdir), "--db", db,
                "--engine", str(i), "--tasks", str(tasks), "--out", str(outs[i])),
        stdout=subprocess.DEVNULL, stderr=errs[i].open("w")) for i in range(engines)]
    reader = watch = None
    stop = base / f"stop-{engines}"
    if readers:
        reader = subprocess.Popen(  # noqa: S603
            _script("_reader", "--workdir", str(workdir), "--db", db, "--stop", str(stop)),
            stdout=subprocess.PIPE, text=True)
        watch = _start_watch(workdir, db, procs)
    for p in procs:
        p.wait()
    phase.wall = time.perf_counter() - start
    stop.touch()
    if reader is not None:
        phase.reader = json.loads(reader.communicate(timeout=60)[0] or "{}")
    if watch is not None:
        phase.watch_rc = watch.wait(timeout=120)
    _collect(phase, procs, outs, errs)
    _check_store(phase, workdir, db)
    return phase


def _start_watch(workdir: Path, db: str, procs: list[subprocess.Popen[bytes]]
                 ) -> subprocess.Popen[bytes] | None:
    """``corral status --watch`` on the first run that shows up."""
    from corral.store import Store

    store = Store.open(workdir, db or None)
    try:
        while all(p.poll() is None for p in procs):
            runs = store.list_runs(1)
            if runs:
                args = ["status", runs[0]["id"], "--watch", "--interval", str(POLL), "--limit", "5"]
                return subprocess.Popen(  # noqa: S603
                    _corral(*args, *(["--db", db] if db else [])), cwd=workdir,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.05)
    finally:
        store.close()
    return None


def _collect(phase: Phase, procs: list[subprocess.Popen[bytes]], outs: list[Path],
             errs: list[Path]) -> None:
    for i, p in enumerate(procs):
        text = errs[i].read_text()
        if "database is locked" in text:
            phase.problems.append(f"engine {i}: database is locked")
        if p.returncode != 0 or not outs[i].exists():
            phase.problems.append(f"engine {i} exited {p.returncode}: {text.strip()[-300:]}")
            continue
        phase.records.append(json.loads(outs[i].read_text()))
    if phase.reader.get("n_errors"):
        phase.problems.append(f"reader errors: {phase.reader['errors']}")
    if phase.watch_rc not in (None, 0):
        phase.problems.append(f"corral status --watch exited {phase.watch_rc}")


def _check_store(phase: Phase, workdir: Path, db: str) -> None:
    """Every task of every run succeeded, with exactly one attempt."""
    from corral.store import Store

    store = Store.open(workdir, db or None)
    try:
        for record in phase.records:
            tasks = store.tasks(record["run_id"])
            attempts: dict[int, int] = {}
            for a in store.attempts(record["run_id"]):
                attempts[a["task_id"]] = attempts.get(a["task_id"], 0) + 1
            bad = [t["name"] for t in tasks if t["state"] != "succeeded"]
            dup = [n for n in attempts.values() if n != 1]
            if len(tasks) != phase.tasks or bad or dup or len(attempts) != phase.tasks:
                phase.problems.append(f"run {record['run_id']}: {len(tasks)} tasks, "
                                      f"{len(bad)} not succeeded, {len(dup)} with 2+ attempts")
    finally:
        store.close()


@contextlib.contextmanager
def fresh_database(url: str | None) -> Iterator[str]:
    """'' (each working directory's own SQLite), or ``url`` in a new schema dropped after."""
    if not url:
        yield ""
        return
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# ---------------------------------------------------------------------------- output

HEADER = ("| database | engines x tasks | wall s | tasks/s | per-task ms | vs alone | "
          "commits | p50 ms | p99 ms | reader polls | problems |")


def table_row(name: str, phase: Phase, alone: Phase) -> str:
    ratio = phase.per_task_ms / alone.per_task_ms
    polls = phase.reader.get("polls", "-")
    problems = "; ".join(phase.problems) or "none"
    return (f"| {name} | {phase.engines} x {phase.tasks} | {phase.wall:.1f} | "
            f"{phase.throughput:.0f} | {phase.per_task_ms:.2f} | {ratio:.2f}x | {phase.commits} | "
            f"{phase.latency(0.5):.1f} | {phase.latency(0.99):.1f} | {polls} | {problems} |")


def bench(ns: argparse.Namespace) -> int:
    targets = [("SQLite", None)] if not ns.db or ns.sqlite else []
    if ns.db:
        targets.append(("PostgreSQL", ns.db))
    lines = [HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    ok = True
    for name, url in targets:
        with tempfile.TemporaryDirectory(prefix="corral-bench-store-") as d:
            with fresh_database(url) as db:
                alone = run_phase(1, ns.tasks, db, Path(d), readers=False)
            with fresh_database(url) as db:
                together = run_phase(ns.engines, ns.tasks, db, Path(d), readers=True)
        lines += [table_row(name, alone, alone), table_row(name, together, alone)]
        ratio = together.per_task_ms / alone.per_task_ms
        ok = ok and not (alone.problems or together.problems) and ratio <= 2.0
        if not ns.markdown:
            print(lines[-2], lines[-1], sep="\n", flush=True)
    if ns.markdown:
        print("\n".join(lines))
    print(f"goals {'met' if ok else 'NOT met'}: no failure, no 'database is locked', "
          "each task once, per-task cost within 2x of one engine alone")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Corral state store under load")
    sub = parser.add_subparsers(dest="mode")
    eng = sub.add_parser("_engine")
    for opt in ("--pipeline", "--workdir", "--db", "--out"):
        eng.add_argument(opt, required=True)
    eng.add_argument("--engine", type=int, required=True)
    eng.add_argument("--tasks", type=int, required=True)
    rd = sub.add_parser("_reader")
    for opt in ("--workdir", "--db", "--stop"):
        rd.add_argument(opt, required=True)
    parser.add_argument("--engines", type=int, default=8, help="engines at once (default 8)")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per engine (default 5000)")
    parser.add_argument("--db", help="also (or, without --sqlite, only) this PostgreSQL URL")
    parser.add_argument("--sqlite", action="store_true", help="SQLite too when --db is given")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    ns = parser.parse_args(argv)
    if ns.mode == "_engine":
        return engine_mode(ns)
    if ns.mode == "_reader":
        return reader_mode(ns)
    return bench(ns)


if __name__ == "__main__":
    sys.exit(main())
