"""Corral's overhead, measured side by side with plain-Python and shell peers in one run.

    python bench/overhead.py              # full size (a minute or two on 2 cores)
    python bench/overhead.py --quick      # small counts, a smoke test
    python bench/overhead.py --markdown   # a markdown table for docs/benchmarks.md
    python bench/overhead.py --only 1,4 --repeat 3 --profile prof/   # some rows, profiled

Rows:

1. 10,000 no-op Python tasks, 2 workers: ``corral.run`` (fresh workdir, state in SQLite) vs
   ``concurrent.futures.ProcessPoolExecutor(2).submit``. Goal (issue 12): <= 1.0x the pool.
2. 1,000 ``true`` shell tasks, 2 at a time: Corral vs ``xargs -P2``. Goal: <= 1.3x xargs.
3. Littlewood degree 16, size 200: ``corral run -j 2`` end to end vs a hand-written
   ``multiprocessing.Pool(2)`` over the same chunks, as a fresh process. Goal: <= 1.10x the
   Pool. The sequential script is shown for comparison (in process too, without a goal). The
   full benchmark adds degree 18 (four times the work), the size the goal is set at.
4. Build and plan a graph of 100,000 independent tasks plus one gather (goal < 3 s), and
   re-check a completed 10,000-task run where everything is cached (goal < 0.5 s).
5. A fully cached 20-task ``corral run -j 2`` as a fresh process (the command line's start-up,
   the store, the cache check and recording the run). Goal (issue 12): <= 0.40 s, the median
   of 7 runs after a warm-up (3 with ``--quick``), with byte-code caching on.
6. 10,000 no-op calls given one ``submit`` at a time to ``corral.Executor(jobs=2)`` (each a
   recorded task of one run) vs ``ProcessPoolExecutor(2)``, from creating the executor to
   leaving its ``with`` block (the rounds of ``bench/interactive.py``). Goal (issue 13):
   <= 1.5x the pool.

Times are wall-clock seconds, the best of ``--repeat`` runs. "Corral engine CPU" is the CPU
time of this process during an in-process Corral run: the engine's own work (graph, planning,
bookkeeping, SQLite), without the workers; it depends much less on other load than wall time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "littlewood"
JOBS = 2


# ---------------------------------------------------------------------------- workloads

def noop(i: int) -> None:
    """The no-op of the process-pool peer (module level, so the pool can pickle it)."""
    return None


@dataclass
class Sizes:
    noop_tasks: int
    shell_tasks: int
    degree: int
    size: int
    plan_tasks: int
    recheck_tasks: int


FULL = Sizes(noop_tasks=10_000, shell_tasks=1_000, degree=16, size=200, plan_tasks=100_000,
             recheck_tasks=10_000)
QUICK = Sizes(noop_tasks=300, shell_tasks=30, degree=10, size=64, plan_tasks=2_000,
              recheck_tasks=300)


def corral_pipelines() -> dict[str, Any]:
    """The Corral pipelines of the benchmark (built lazily: corral may be unavailable)."""
    from corral import pipeline, shell, task

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
    def trues(n: int) -> Any:
        return [shell("true # {params.i}", params={"i": i}, name="true") for i in range(n)]

    @pipeline
    def wide(n: int) -> Any:
        return count(cached_noop.map(i=range(n)))

    return {"noops": noops, "cached_noops": cached_noops, "trues": trues, "wide": wide}


# ---------------------------------------------------------------------------- measuring

@dataclass
class Row:
    workload: str
    corral_timing: Timing | None
    peer_timing: Timing | None
    peer_name: str
    goal: str
    check: Callable[[float, float | None], bool]
    note: str = ""

    @property
    def corral(self) -> float | None:
        return None if self.corral_timing is None else self.corral_timing.wall

    @property
    def corral_cpu(self) -> float | None:
        return None if self.corral_timing is None else self.corral_timing.cpu

    @property
    def peer(self) -> float | None:
        return None if self.peer_timing is None else self.peer_timing.wall

    @property
    def ratio(self) -> float | None:
        if self.corral is None or self.peer is None or self.peer == 0:
            return None
        return self.corral / self.peer

    @property
    def met(self) -> bool | None:
        if self.corral is None:
            return None
        return self.check(self.corral, self.peer)


class Timing(NamedTuple):
    wall: float
    """Wall-clock seconds."""
    cpu: float | None = None
    """CPU seconds of this process (the engine, for in-process Corral runs), if meaningful."""


def best_of(repeat: int, fn: Callable[[], Timing]) -> Timing:
    return min((fn() for _ in range(repeat)), key=lambda t: t.wall)


def timed(fn: Callable[[], Any], cpu: bool = False) -> Timing:
    cpu_start = time.process_time()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    return Timing(wall, time.process_time() - cpu_start if cpu else None)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as d:
        old = Path.cwd()
        os.chdir(d)
        try:
            yield Path(d)
        finally:
            os.chdir(old)


def corral_run(pipe: Any, params: dict[str, Any], where: Path) -> Any:
    import corral

    result = corral.run(pipe, params=params, jobs=JOBS, workdir=where)
    if not result.ok:
        raise RuntimeError(f"corral run of {pipe.name} ended {result.state}: {result.errors[:3]}")
    return result


def plan_graph(pipe: Any, params: dict[str, Any], where: Path) -> Any:
    """Build and plan (validate, key) ``pipe`` without running it."""
    import corral

    return corral.plan(pipe, params, workdir=where)


PROFILE_DIR: Path | None = None
"""When set (``--profile DIR``), each Corral half runs under cProfile and is dumped there."""


def corral_half(label: str, fn: Callable[[], Timing], errors: list[str]) -> Timing | None:
    """Run a Corral measurement; an error is recorded (and shown as n/a), not raised."""
    profiler = None
    if PROFILE_DIR is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    try:
        return fn()
    except Exception as exc:  # a missing or broken engine must not hide the peer numbers
        message = " ".join(str(exc).split())
        if len(message) > 400:
            message = message[:400] + " ..."
        errors.append(f"{label}: {type(exc).__name__}: {message}")
        if os.environ.get("CORRAL_BENCH_TRACEBACK"):
            traceback.print_exc()
        return None
    finally:
        if profiler is not None and PROFILE_DIR is not None:
            profiler.disable()
            PROFILE_DIR.mkdir(parents=True, exist_ok=True)
            slug = "".join(c if c.isalnum() else "-" for c in label)
            profiler.dump_stats(PROFILE_DIR / f"{slug}.prof")


# -- peers

def peer_pool(n: int) -> Timing:
    def go() -> None:
        with concurrent.futures.ProcessPoolExecutor(JOBS) as pool:
            for f in [pool.submit(noop, i) for i in range(n)]:
                f.result()

    return timed(go)


def peer_xargs(n: int) -> Timing:
    def go() -> None:
        subprocess.run(  # noqa: S603
            ["xargs", f"-P{JOBS}", "-I{}", "true"], input="\n".join(map(str, range(n))) + "\n",
            text=True, check=True,
        )

    return timed(go)


def sequential_subprocess(sizes: Sizes, out: Path) -> Timing:
    argv = [sys.executable, str(EXAMPLE / "sequential.py"), "--degree", str(sizes.degree),
            "--size", str(sizes.size), "--out", str(out), "--quiet"]
    return timed(lambda: subprocess.run(argv, check=True))  # noqa: S603


MP_SPLIT = """
import sys
from multiprocessing import Pool
sys.path.insert(0, sys.argv[1])
from littlewood_math import chunk_histogram, prefixes, save_png, sum_histograms
def chunk(prefix):
    return chunk_histogram(DEGREE, prefix, SIZE)
if __name__ == "__main__":
    with Pool(JOBS) as pool:
        parts = pool.map(chunk, prefixes(DEGREE), chunksize=1)
    save_png(sum_histograms(parts), sys.argv[2])
"""


def multiprocessing_subprocess(sizes: Sizes, out: Path) -> Timing:
    """A hand-written ``multiprocessing.Pool`` split of the same chunks, as a fresh process."""
    code = (MP_SPLIT.replace("DEGREE", str(sizes.degree)).replace("SIZE", str(sizes.size))
            .replace("JOBS", str(JOBS)))
    argv = [sys.executable, "-c", code, str(EXAMPLE), str(out)]
    return timed(lambda: subprocess.run(argv, check=True))  # noqa: S603


def sequential_inprocess(sizes: Sizes, out: Path) -> Timing:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import littlewood_math as lm
    finally:
        sys.path.remove(str(EXAMPLE))

    def go() -> None:
        parts = [lm.chunk_histogram(sizes.degree, p, sizes.size) for p in lm.prefixes(sizes.degree)]
        lm.save_png(lm.sum_histograms(parts), out)

    return timed(go)


# -- Corral halves

def corral_noops(n: int) -> Timing:
    pipes = corral_pipelines()
    with workdir() as d:
        return timed(lambda: corral_run(pipes["noops"], {"n": n}, d), cpu=True)


def corral_trues(n: int) -> Timing:
    pipes = corral_pipelines()
    with workdir() as d:
        return timed(lambda: corral_run(pipes["trues"], {"n": n}, d), cpu=True)


def corral_cli() -> list[str]:
    script = Path(sys.executable).with_name("corral")
    if script.exists():
        return [str(script)]
    found = shutil.which("corral")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from corral.cli.app import main; sys.exit(main())"]


def corral_littlewood_subprocess(sizes: Sizes) -> Timing:
    with workdir() as d:
        argv = [*corral_cli(), "run", str(EXAMPLE / "pipeline.py"), "--degree", str(sizes.degree),
                "--size", str(sizes.size), "--out", str(d / "corral.png"), "-j", str(JOBS)]

        def go() -> None:
            proc = subprocess.run(argv, cwd=d, capture_output=True, text=True)  # noqa: S603
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}")

        seconds = timed(go)
        if not (d / "corral.png").exists():
            raise RuntimeError("corral run did not write the picture")
        return seconds


def littlewood_pipeline() -> Any:
    import corral

    return corral.load_pipeline(EXAMPLE / "pipeline.py", "littlewood")


def corral_littlewood_inprocess(sizes: Sizes) -> Timing:
    pipe = littlewood_pipeline()
    with workdir() as d:
        params = {"degree": sizes.degree, "size": sizes.size, "out": str(d / "corral.png")}
        return timed(lambda: corral_run(pipe, params, d), cpu=True)


def corral_plan(n: int) -> Timing:
    pipes = corral_pipelines()
    with workdir() as d:
        return timed(lambda: plan_graph(pipes["wide"], {"n": n}, d), cpu=True)


def corral_recheck(n: int) -> Timing:
    pipes = corral_pipelines()
    with workdir() as d:
        corral_run(pipes["cached_noops"], {"n": n}, d)
        return timed(lambda: corral_run(pipes["cached_noops"], {"n": n}, d), cpu=True)


CACHED_PIPELINE = """
from corral import pipeline, task

@task
def square(i: int) -> int:
    return i * i

@pipeline
def squares(n: int = 20) -> list[int]:
    return square.map(i=range(n))
"""


def corral_cached_cli(runs: int) -> Timing:
    """The median wall time of ``runs`` fully cached 20-task ``corral run`` processes."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with workdir() as d:
        (d / "squares.py").write_text(CACHED_PIPELINE)
        argv = [*corral_cli(), "run", "squares.py", "-j", str(JOBS), "--n", "20"]
        outputs: list[str] = []

        def go() -> None:
            proc = subprocess.run(argv, cwd=d, capture_output=True, text=True, env=env)  # noqa: S603
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}")
            outputs.append(proc.stdout)

        go()  # computes the 20 tasks
        go()  # a warm-up: the file system's caches, byte code
        seconds = statistics.median(timed(go).wall for _ in range(runs))
        if "20 cached" not in outputs[-1]:
            raise RuntimeError(f"the last run was not fully cached:\n{outputs[-1]}")
        return Timing(seconds)


def interactive_submits(corral: bool, n: int) -> Timing:
    """One round of ``bench/interactive.py`` (workload 6): ``n`` no-op submits."""
    import interactive  # bench/interactive.py: this script's directory is on sys.path

    t = interactive.corral_round(n) if corral else interactive.pool_round(n)
    return Timing(t.total, t.cpu)


# ---------------------------------------------------------------------------- the table

def littlewood_rows(
    degree: int, size: int, repeat: int, errors: list[str], in_process: bool, notes: list[str]
) -> list[Row]:
    sizes = Sizes(0, 0, degree, size, 0, 0)
    label = f"Littlewood degree {degree}, size {size}"
    goal = f"<= 1.10x Pool({JOBS})"
    with tempfile.TemporaryDirectory(prefix="corral-bench-seq-") as d:
        out = Path(d) / "seq.png"
        seq_cli = best_of(repeat, lambda: sequential_subprocess(sizes, out))
        seq_inproc = best_of(repeat, lambda: sequential_inprocess(sizes, out)) if in_process \
            else None
        split = best_of(repeat, lambda: multiprocessing_subprocess(sizes, out))
    notes.append(f"{label}: the sequential script takes {fmt_seconds(seq_cli.wall)} end to end; "
                 f"the Pool({JOBS}) split {split.wall / seq_cli.wall:.2f}x of it (for comparison)")
    rows = [Row(
        f"{label} (CLI, end to end)",
        corral_half(f"littlewood {degree} CLI",
                    lambda: best_of(repeat, lambda: corral_littlewood_subprocess(sizes)), errors),
        split, f"multiprocessing.Pool({JOBS}) split", goal,
        lambda c, p: p is not None and c <= 1.10 * p,
    )]
    if in_process:
        rows.append(Row(
            f"{label} (in process)",
            corral_half(f"littlewood {degree} in process",
                        lambda: best_of(repeat, lambda: corral_littlewood_inprocess(sizes)),
                        errors),
            seq_inproc, "sequential, in process", "- (for comparison)",
            lambda c, p: True,
        ))
    return rows


def measure(sizes: Sizes, repeat: int, errors: list[str], only: set[int], extra: bool,
            notes: list[str]) -> list[Row]:
    rows: list[Row] = []
    if 1 in only:
        n = sizes.noop_tasks
        rows.append(Row(
            f"{n:,} no-op Python tasks, {JOBS} workers",
            corral_half("no-op tasks", lambda: best_of(repeat, lambda: corral_noops(n)), errors),
            best_of(repeat, lambda: peer_pool(n)),
            f"ProcessPoolExecutor({JOBS})",
            "<= 1.0x pool",
            lambda c, p: p is not None and c <= p,
        ))
    if 2 in only:
        n = sizes.shell_tasks
        rows.append(Row(
            f"{n:,} `true` shell tasks, {JOBS} at a time",
            corral_half("shell tasks", lambda: best_of(repeat, lambda: corral_trues(n)), errors),
            best_of(repeat, lambda: peer_xargs(n)),
            f"xargs -P{JOBS}",
            "<= 1.3x xargs",
            lambda c, p: p is not None and c <= 1.3 * p,
        ))
    if 3 in only:
        rows += littlewood_rows(sizes.degree, sizes.size, repeat, errors, True, notes)
        if extra:  # a heavier run, to see the fixed costs amortised
            rows += littlewood_rows(sizes.degree + 2, sizes.size, repeat, errors, False, notes)
    if 4 in only:
        n = sizes.plan_tasks
        rows.append(Row(
            f"Build + plan {n:,} tasks + 1 gather",
            corral_half("plan", lambda: best_of(repeat, lambda: corral_plan(n)), errors),
            None, "-", "< 3 s", lambda c, p: c < 3.0,
        ))
        n = sizes.recheck_tasks
        rows.append(Row(
            f"Re-check {n:,} cached tasks",
            corral_half("recheck", lambda: best_of(repeat, lambda: corral_recheck(n)), errors),
            None, "-", "< 0.5 s", lambda c, p: c < 0.5,
        ))
    if 5 in only:
        runs = 3 if sizes is QUICK else 7
        rows.append(Row(
            f"Fully cached 20-task `corral run` (CLI, median of {runs})",
            corral_half("cached run CLI", lambda: corral_cached_cli(runs), errors),
            None, "-", "<= 0.40 s", lambda c, p: c <= 0.40,
        ))
    if 6 in only:
        n = sizes.noop_tasks
        rows.append(Row(
            f"{n:,} no-op `corral.Executor` submits, {JOBS} workers",
            corral_half("interactive submits",
                        lambda: best_of(repeat, lambda: interactive_submits(True, n)), errors),
            best_of(repeat, lambda: interactive_submits(False, n)),
            f"ProcessPoolExecutor({JOBS})",
            "<= 1.5x pool",
            lambda c, p: p is not None and c <= 1.5 * p,
        ))
    return rows


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} s" if value >= 0.1 else f"{value * 1000:.0f} ms"


def cells(row: Row) -> list[str]:
    peer = "-" if row.peer is None else f"{fmt_seconds(row.peer)} ({row.peer_name})"
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    met = {True: "yes", False: "NO", None: "n/a"}[row.met]
    cpu = "-" if row.corral_cpu is None else fmt_seconds(row.corral_cpu)
    return [row.workload, fmt_seconds(row.corral), cpu, peer, ratio, row.goal, met]


HEADERS = ["Workload", "Corral", "Corral engine CPU", "Peer", "Ratio (Corral/peer)", "Goal",
           "Met?"]


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join("---" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def print_table(rows: list[Row], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency of corral
        widths = [max(len(h), *(len(cells(r)[i]) for r in rows)) for i, h in enumerate(HEADERS)]
        print(title)
        for line in [HEADERS, *(cells(r) for r in rows)]:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
        return
    table = Table(title=title)
    for h in HEADERS:
        right = h in ("Corral", "Corral engine CPU", "Ratio (Corral/peer)")
        table.add_column(h, justify="right" if right else "left")
    for r in rows:
        style = {True: "green", False: "red", None: "yellow"}[r.met]
        c = cells(r)
        c[-1] = f"[{style}]{c[-1]}[/{style}]"
        table.add_row(*c)
    Console(width=max(170, shutil.get_terminal_size().columns)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Corral overhead benchmark")
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke test)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    parser.add_argument("--only", default="1,2,3,4,5,6",
                        help="comma-separated workloads to run, of 1-6 (default: all)")
    parser.add_argument("--no-extra", action="store_true",
                        help="skip the heavier Littlewood run (degree + 2) of the full benchmark")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile each Corral measurement with cProfile into DIR/*.prof "
                             "(times are then inflated)")
    ns = parser.parse_args(argv)
    global PROFILE_DIR
    PROFILE_DIR = ns.profile
    try:
        only = {int(x) for x in ns.only.split(",") if x.strip()}
    except ValueError:
        parser.error(f"--only {ns.only!r}: give workload numbers like 1,3")
    if not only <= {1, 2, 3, 4, 5, 6}:
        parser.error(f"--only {ns.only!r}: workloads are numbered 1 to 6")
    sizes = QUICK if ns.quick else FULL
    errors: list[str] = []
    # Corral's running API (SQLAlchemy, the engine) is imported on first use; import it here,
    # once per process like the peers' modules, so that no in-process row pays for it (the
    # command-line rows include it)
    import corral.api  # noqa: F401

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    notes: list[str] = []
    extra = not ns.quick and not ns.no_extra
    rows = measure(sizes, max(1, ns.repeat), errors, only, extra, notes)
    elapsed = time.perf_counter() - start
    title = (f"Corral overhead ({'quick' if ns.quick else 'full'}, {os.cpu_count()} CPUs, "
             f"Python {sys.version.split()[0]}, best of {max(1, ns.repeat)}, "
             f"load average {load_before:.1f} before)")
    if ns.markdown:
        print(f"**{title}**\n")
        print(markdown_table(rows))
    else:
        print_table(rows, title)
    if notes:
        print()
    for note in notes:
        print(f"* {note}" if ns.markdown else f"Note: {note}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"benchmark took {elapsed:.1f} s", file=sys.stderr)
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(f"warning: the load average was {load_before:.1f} when the benchmark started; "
              "other processes competed for the CPUs", file=sys.stderr)
    missed = [r.workload for r in rows if r.met is False]
    if missed:
        print(f"goals missed: {'; '.join(missed)}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
