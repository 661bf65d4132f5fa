"""How Corral's cost grows with the number of tasks: 10,000, 100,000 and 1,000,000.

    python bench/scale.py                         # 10k and 100k (a few minutes on 2 cores)
    python bench/scale.py --sizes 1000000         # one size (a million: many minutes)
    python bench/scale.py --quick                 # 1,000 and 2,000 tasks, a smoke test
    python bench/scale.py --markdown              # a markdown table for docs/benchmarks.md
    python bench/scale.py --sizes 100000 --only run --profile prof/   # one step, profiled

For each size N, each step runs in a fresh Python process (so that its peak memory is its own):

* ``plan``: ``corral.plan`` of N independent no-op tasks plus one gather (graph, validation,
  cache keys); nothing runs.
* ``run``: ``corral.run`` of N no-op tasks (``cache=False``) on the local executor, ``-j 2``,
  state in SQLite, in a fresh working directory: end to end, the engine's CPU time and its
  peak resident memory (the engine process only; the two worker processes are not counted).
* ``recheck``: the same pipeline with cacheable tasks run once, then run again: every task
  cached; the second run is timed.
* ``status``: ``corral status`` of that run as a command (a fresh process, its output thrown
  away): what a user waits for. An ended run's tasks are read by group from its summary.
* ``page`` (only with ``--only``): ``corral status --offset N/2`` of that run, a page of
  ``--limit`` (50) tasks from the middle, as a command.

The per-task columns (microseconds per task, kilobytes per task) show whether the cost stays
flat as N grows. Goals (issue 12): 1M-task run <= 180 s at <= 2 GB engine peak RSS; plan of
1M <= 10 s; re-check of 100k cached <= 3 s; status of a 1M-task run <= 1 s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
JOBS = 2
STEPS = ("plan", "run", "recheck", "status")
EXTRA_STEPS = ("page",)
"""Steps measured only when ``--only`` names them."""
GOALS = {  # (step, tasks) -> seconds, for the goal column
    ("run", 1_000_000): 180.0, ("plan", 1_000_000): 10.0, ("recheck", 100_000): 3.0,
    ("status", 1_000_000): 1.0, ("page", 1_000_000): 1.0,
}
RSS_GOAL = 2 * 1024 ** 3
"""The engine's peak resident memory on a 1M-task run (bytes)."""


def pipelines() -> dict[str, Any]:
    from corral import pipeline, task

    @task(cache=False)
    def noop_task(i: int) -> None:
        return None

    @task
    def cached_noop(i: int) -> None:
        return None

    @task
    def count(values: list[Any]) -> int:
        return len(values)

    @pipeline
    def noops(n: int) -> Any:
        return noop_task.map(i=range(n))

    @pipeline
    def cached_noops(n: int) -> Any:
        return cached_noop.map(i=range(n))

    @pipeline
    def wide(n: int) -> Any:
        return count(cached_noop.map(i=range(n)))

    return {"noops": noops, "cached_noops": cached_noops, "wide": wide}


# ---------------------------------------------------------------------------- one step

def _peak_rss() -> int:
    """This process's peak resident memory in bytes (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(step: str, n: int, where: Path, profile: Path | None) -> dict[str, Any]:
    """Run one step in this (fresh) process; return its figures."""
    import corral

    pipes = pipelines()

    def run(name: str) -> None:
        result = corral.run(pipes[name], params={"n": n}, jobs=JOBS, workdir=where, new=True)
        if not result.ok:
            raise RuntimeError(f"{name} ended {result.state}: {result.errors[:3]}")

    if step == "recheck":
        run("cached_noops")  # the first run, not timed
    actions: dict[str, Callable[[], object]] = {
        "plan": lambda: corral.plan(pipes["wide"], {"n": n}, workdir=where),
        "run": lambda: run("noops"),
        "recheck": lambda: run("cached_noops"),
    }
    action = actions[step]
    prof = cProfile.Profile() if profile else None
    cpu, t0 = _cpu(), time.perf_counter()
    if prof:
        prof.enable()
    action()
    if prof:
        prof.disable()
    seconds, cpu = time.perf_counter() - t0, _cpu() - cpu
    if prof and profile:
        profile.mkdir(parents=True, exist_ok=True)
        prof.dump_stats(str(profile / f"{step}-{n}.prof"))
    return {"seconds": seconds, "cpu": cpu, "rss": _peak_rss()}


def in_child(step: str, n: int, where: Path, profile: Path | None) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", step, "--n", str(n), "--workdir", str(where)]
    if profile:
        argv += ["--profile", str(profile)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise RuntimeError(f"{step} of {n:,} tasks failed:\n{proc.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


def status_of(where: Path, *extra: str) -> dict[str, Any]:
    """``corral status latest`` of the run in ``where`` (with the options ``extra``), as a
    command."""
    argv = [sys.executable, "-m", "corral.cli.app", "status", "latest", "--workdir", str(where),
            *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,  # noqa: S603
                          env={**os.environ, "COLUMNS": "120"})
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"corral status failed: {proc.stderr[-1000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": seconds, "cpu": cpu, "rss": after.ru_maxrss * 1024}


# ---------------------------------------------------------------------------- the table

def measure(sizes: list[int], steps: list[str], profile: Path | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="corral-scale-") as d:
            ran = False
            for step in steps:
                where = Path(d) / step
                where.mkdir(exist_ok=True)
                try:
                    if step in ("status", "page"):
                        if not ran:
                            in_child("run", n, where, None)
                            ran = _share_run(Path(d), where, steps)
                        figures = status_of(where, *(() if step == "status" else
                                                     ("--offset", str(n // 2))))
                    else:
                        figures = in_child(step, n, where, profile)
                        if step == "run":
                            ran = _share_run(Path(d), where, steps)
                except RuntimeError as exc:
                    print(f"error: {exc}", file=sys.stderr)
                    figures = {}
                rows.append({"step": step, "tasks": n, **figures})
                print_row(rows[-1], sys.stderr)
    return rows


def _share_run(root: Path, where: Path, steps: list[str]) -> bool:
    """The status steps read the run in ``where``: link their folders to it."""
    for step in ("status", "page"):
        if step in steps and not (root / step).exists():
            (root / step).symlink_to(where, target_is_directory=True)
    return True


def goal_text(row: dict[str, Any]) -> str:
    goal = GOALS.get((row["step"], row["tasks"]))
    if goal is None or "seconds" not in row:
        return ""
    met = row["seconds"] <= goal
    if row["step"] == "run":
        met = met and row["rss"] <= RSS_GOAL
        return f"<= {goal:.0f} s, <= 2 GB: {'met' if met else 'NOT met'}"
    return f"<= {goal:g} s: {'met' if met else 'NOT met'}"


def cells(row: dict[str, Any]) -> list[str]:
    n = row["tasks"]
    if "seconds" not in row:
        return [row["step"], f"{n:,}", "failed", "", "", "", "", ""]
    us = row["seconds"] / n * 1e6
    return [row["step"], f"{n:,}", f"{row['seconds']:.2f}", f"{row['cpu']:.2f}", f"{us:.0f}",
            f"{row['rss'] / 2**20:,.0f}", f"{row['rss'] / n / 1024:.2f}", goal_text(row)]


HEADER = ["Step", "Tasks", "Wall s", "CPU s", "us/task", "Peak RSS MiB", "KiB/task", "Goal"]


def print_row(row: dict[str, Any], out: Any) -> None:
    print("  ".join(f"{c:>12}" for c in cells(row)), file=out, flush=True)


def print_table(rows: list[dict[str, Any]], markdown: bool) -> None:
    if markdown:
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER))
        for row in rows:
            print("| " + " | ".join(cells(row)) + " |")
        return
    print("  ".join(f"{h:>12}" for h in HEADER))
    for row in rows:
        print_row(row, sys.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000", help="task counts, comma-separated")
    ap.add_argument("--only", default=",".join(STEPS),
                    help=f"steps, of {','.join(STEPS + EXTRA_STEPS)}")
    ap.add_argument("--quick", action="store_true", help="1,000 and 2,000 tasks")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--profile", type=Path, help="dump each step's cProfile stats here")
    ap.add_argument("--child", choices=("plan", "run", "recheck"), help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.workdir, args.profile)))
        return 0
    sizes = [1000, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    steps = [s for s in args.only.split(",") if s]
    unknown = set(steps) - set(STEPS) - set(EXTRA_STEPS)
    if unknown:
        ap.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS + EXTRA_STEPS)}")
    rows = measure(sizes, steps, args.profile)
    print_table(rows, args.markdown)
    return 1 if any("seconds" not in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
