"""``corral.Executor`` against ``concurrent.futures.ProcessPoolExecutor``, in the same run.

    python bench/interactive.py                  # 10,000 submits, best of 3
    python bench/interactive.py --count 200 --repeat 1    # a smoke test
    python bench/interactive.py --markdown       # a markdown table for docs/interactive.md
    python bench/interactive.py --profile prof/  # cProfile of one Corral round, top functions
    python bench/interactive.py --sequential 2000    # submit(...).result() one call at a time
    python bench/interactive.py --idle 20        # one call after 0.15 s of idleness, 20 times

Each round submits ``--count`` calls of a no-op one ``submit`` at a time, then waits for every
future, timed from creating the executor to leaving its ``with`` block (start-up and shut-down
included): ``corral.Executor(jobs=2)`` on the local executor, in a fresh working directory
(each call a recorded, cached task of one run, state in SQLite), against
``ProcessPoolExecutor(2)``. "its submits" is the time the ``submit`` loop alone took, "its CPU"
the CPU time of the benchmark's process in the round (the caller and, for Corral, the engine's
thread; not the worker processes), which depends much less on other load. Goal: Corral
at most 1.5x the pool's time. Times are wall-clock seconds, the best of ``--repeat`` rounds.

``--sequential N`` measures another pattern instead: N calls one after the other, each
``submit(...).result()`` before the next (each call admitted by the engine on its own), and
prints the milliseconds per call in each quarter of the N, for both executors: a cost per
call that grows with the calls already made shows in the later quarters. ``--idle N``: N
calls, each after :data:`IDLE` seconds without any, the milliseconds from ``submit`` to its
result (median and worst), for both executors.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, NamedTuple

GOAL = 1.5
JOBS = 2
IDLE = 0.15
"""Seconds without a call before each call of ``--idle``."""


def noop(i: int) -> None:
    """The no-op each call runs (module level: the pool pickles it by reference)."""
    return None


class Timing(NamedTuple):
    total: float
    submit: float
    cpu: float
    """CPU seconds of this process (the caller, and Corral's engine thread; not the workers)."""


def one_round(make: Callable[[], Executor], count: int) -> Timing:
    begin, cpu = time.perf_counter(), time.process_time()
    with make() as ex:
        futures = [ex.submit(noop, i) for i in range(count)]
        submitted = time.perf_counter()
        concurrent.futures.wait(futures)
        bad = [f for f in futures if f.exception() is not None]
        if bad:
            raise RuntimeError(f"{len(bad)} calls failed, the first: {bad[0].exception()}")
    return Timing(time.perf_counter() - begin, submitted - begin, time.process_time() - cpu)


def corral_round(count: int) -> Timing:
    import corral

    where = Path(tempfile.mkdtemp(prefix="corral-bench-interactive-"))
    try:
        return one_round(lambda: corral.Executor(workdir=where, jobs=JOBS, progress=False),
                         count)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def pool_round(count: int) -> Timing:
    return one_round(lambda: concurrent.futures.ProcessPoolExecutor(JOBS), count)


def sequential(make: Callable[[], Executor], count: int) -> list[float]:
    """Milliseconds per ``submit(...).result()`` call, in each quarter of ``count`` calls."""
    quarter = max(1, count // 4)
    out: list[float] = []
    with make() as ex:
        ex.submit(noop, -1).result()  # started: the pool's workers, Corral's engine
        begin = time.perf_counter()
        for i in range(quarter * 4):
            ex.submit(noop, i).result()
            if (i + 1) % quarter == 0:
                now = time.perf_counter()
                out.append((now - begin) / quarter * 1e3)
                begin = now
    return out


def side_by_side(measure: Callable[[Callable[[], Executor], int], list[float]],
                 count: int) -> list[tuple[str, list[float]]]:
    """``measure(make_executor, count)`` for a corral.Executor and for the pool, in that order."""
    import corral

    where = Path(tempfile.mkdtemp(prefix="corral-bench-interactive-"))
    try:
        return [("corral.Executor", measure(
                    lambda: corral.Executor(workdir=where, jobs=JOBS, progress=False), count)),
                (f"ProcessPoolExecutor({JOBS})", measure(
                    lambda: concurrent.futures.ProcessPoolExecutor(JOBS), count))]
    finally:
        shutil.rmtree(where, ignore_errors=True)


def sequential_table(count: int) -> str:
    rows = side_by_side(sequential, count)
    lines = [f"{count:,} sequential calls, ms per call by quarter: 1st  2nd  3rd  4th"]
    lines += [f"  {name:<24}" + "".join(f"{ms:7.1f}" for ms in quarters)
              for name, quarters in rows]
    return "\n".join(lines)


def after_idle(make: Callable[[], Executor], count: int) -> list[float]:
    """Milliseconds from ``submit`` to the result of ``count`` calls, each after :data:`IDLE`
    seconds without any."""
    out: list[float] = []
    with make() as ex:
        ex.submit(noop, -1).result()
        for i in range(count):
            time.sleep(IDLE)
            begin = time.perf_counter()
            ex.submit(noop, i).result()
            out.append((time.perf_counter() - begin) * 1e3)
    return out


def idle_table(count: int) -> str:
    rows = side_by_side(after_idle, count)
    lines = [f"{count} calls after {IDLE} s idle, ms from submit to result: median  worst"]
    lines += [f"  {name:<24}{statistics.median(ms):8.1f}{max(ms):7.1f}" for name, ms in rows]
    return "\n".join(lines)


def best(repeat: int, fn: Callable[[int], Timing], count: int) -> Timing:
    return min((fn(count) for _ in range(repeat)), key=lambda t: t.total)


def table(count: int, corral: Timing, pool: Timing, markdown: bool) -> str:
    ratio = corral.total / pool.total
    cells = [f"{count:,} no-op submits, 2 workers", f"{corral.total:.2f} s",
             f"{corral.submit:.2f} s", f"{corral.cpu:.2f} s", f"{pool.total:.2f} s",
             f"{pool.submit:.2f} s", f"{pool.cpu:.2f} s",
             f"{ratio:.2f}x", f"<= {GOAL}x", "yes" if ratio <= GOAL else "NO"]
    head = ["Workload", "corral.Executor", "its submits", "its CPU", "ProcessPoolExecutor(2)",
            "its submits", "its CPU", "Ratio", "Goal", "Met?"]
    if markdown:
        rows = [head, ["---"] * len(head), cells]
        return "\n".join("| " + " | ".join(r) + " |" for r in rows)
    widths = [max(len(h), len(c)) for h, c in zip(head, cells, strict=True)]
    return "\n".join("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip()
                     for r in (head, cells))


def profile(count: int, out: Path) -> None:
    """cProfile of one Corral round: the caller's thread, and the engine's thread apart (a
    profiler sees one thread)."""
    from corral.interactive.live import LiveEngine

    out.mkdir(parents=True, exist_ok=True)
    caller, engine = cProfile.Profile(), cProfile.Profile()
    run = LiveEngine.run

    def profiled(self: LiveEngine) -> Any:
        return engine.runcall(run, self)

    LiveEngine.run = profiled  # type: ignore[method-assign]
    try:
        caller.runcall(corral_round, count)
    finally:
        LiveEngine.run = run  # type: ignore[method-assign]
    for name, prof in (("caller", caller), ("engine", engine)):
        path = out / f"interactive-{name}.prof"
        prof.dump_stats(path)
        print(f"\n{name} thread of one Corral round: {path}")
        pstats.Stats(str(path)).sort_stats("tottime").print_stats(20)
    print(phases(pstats.Stats(str(out / "interactive-engine.prof"))))


PHASES = [
    ("the engine thread, in all", "interactive/live.py", "run"),
    ("admitting calls (graph nodes, keys, task rows, cache look-up)", "interactive/live.py",
     "_admit"),
    ("  of which writing the task rows", "engine/engine.py", "_persist_tasks"),
    ("handing calls over (attempt specs, pickled payloads)", "engine/engine.py", "_release"),
    ("the local executor (dispatch to workers, results, start notices)",
     "executors/local.py", "poll"),
    ("completions (result rows, states, the callers' futures)", "interactive/live.py",
     "_complete"),
    ("  of which resolving the futures", "interactive/live.py", "_resolve"),
    ("SQLite writes of the batched state changes (also inside the above)",
     "engine/recorder.py", "flush"),
]
"""(label, file, function) of the engine thread's phases, by cumulative profiled time."""


def phases(stats: pstats.Stats) -> str:
    """The engine thread's time by phase (cumulative, profiled: cProfile inflates it)."""
    table: dict[tuple[str, str], float] = {}
    for (file, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        for _, suffix, name in PHASES:
            if func == name and file.endswith(suffix):
                table[suffix, name] = table.get((suffix, name), 0.0) + row[3]
    total = table.get(PHASES[0][1:], 0.0) or 1.0
    lines = ["\nthe engine thread by phase (cumulative profiled seconds, share):"]
    lines += [f"  {label:<70} {table.get((suffix, name), 0.0):6.2f} s "
              f"{table.get((suffix, name), 0.0) / total:5.0%}" for label, suffix, name in PHASES]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is shown")
    parser.add_argument("--markdown", action="store_true", help="a markdown table")
    parser.add_argument("--profile", type=Path, help="also profile one Corral round here")
    parser.add_argument("--sequential", type=int, metavar="N",
                        help="instead: N calls one at a time, ms per call by quarter")
    parser.add_argument("--idle", type=int, metavar="N",
                        help=f"instead: N calls each after {IDLE} s idle, ms to the result")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be >= 1")
    load = os.getloadavg()[0]
    if args.sequential is not None:
        if args.sequential < 4:
            parser.error("--sequential must be >= 4 (a quarter is at least one call)")
        print(sequential_table(args.sequential))
        print(f"load average at the start: {load:.1f} on {os.cpu_count()} CPUs")
        return 0
    if args.idle is not None:
        if args.idle < 1:
            parser.error("--idle must be >= 1")
        print(idle_table(args.idle))
        print(f"load average at the start: {load:.1f} on {os.cpu_count()} CPUs")
        return 0
    pool = best(args.repeat, pool_round, args.count)
    corral = best(args.repeat, corral_round, args.count)
    print(table(args.count, corral, pool, args.markdown))
    print(f"load average at the start: {load:.1f} on {os.cpu_count()} CPUs"
          + (" (other processes competed for the CPUs)" if load > (os.cpu_count() or 1) else ""))
    if args.profile is not None:
        profile(args.count, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
