"""Corral vs Snakemake on the local SLURM cluster: a scatter of one-second tasks plus a gather.

    python bench/slurm.py                   # 1,000 tasks per tool (several minutes on 8 CPUs)
    python bench/slurm.py --quick           # 20 tasks, a smoke test
    python bench/slurm.py --markdown        # a markdown table for docs/benchmarks.md
    python bench/slurm.py --skip-snakemake  # Corral only
    python bench/slurm.py --snakemake-arrays  # also Snakemake with --slurm-array-jobs=all

Both tools run the same workload, measured in the same run one after the other:

* Corral: ``@task work(i)`` (``time.sleep(1); return i``) mapped over ``range(N)`` plus a gather
  task summing the results, ``executor="slurm"``, in a fresh temporary workdir. The scatter is
  one array job. The executor's own counters (``submit_calls``, ``query_calls``) and poll
  settings are read from the engine (``corral.api.execute(..., engine_ready=...)``).
* Snakemake with ``snakemake-executor-plugin-slurm``, installed into a separate venv
  (``--snakemake-venv``, default ``~/.cache/corral-bench/snakemake-venv``) if missing: one rule
  with a wildcard over N outputs (``sleep 1``) and a gather rule, ``--executor slurm --jobs N``.

SLURM commands are counted the same way for both: a directory of wrapper scripts (``sbatch``,
``squeue``, ``sacct``, ``scancel``, ``scontrol``, ``sacctmgr``, ``sinfo``) is put first on
``PATH``; each logs a timestamp and its arguments, then execs the real command. Calls made
inside SLURM jobs (``SLURM_JOB_ID`` set) are left out. Status calls are ``squeue`` + ``sacct``.
"Max status calls per interval" is the largest number of status calls in any window as long as
the tool's (shortest) polling interval.

Goals: Corral makes at most 2 submission calls for the scatter + gather, at most 1 status call
per polling interval, and its wall time is below Snakemake's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WRAPPED = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sacctmgr", "sinfo")
STATUS_TOOLS = ("squeue", "sacct")
LOG_VAR = "CORRAL_BENCH_SLURM_LOG"
DEFAULT_VENV = Path.home() / ".cache" / "corral-bench" / "snakemake-venv"
SNAKEMAKE_PACKAGES = ("snakemake", "snakemake-executor-plugin-slurm")
PARTITION = "debug"


# ---------------------------------------------------------------------------- command counting

@dataclass
class Call:
    when: float
    tool: str
    args: str


@dataclass
class Measurement:
    tool: str
    wall: float | None = None
    ok: bool = False
    calls: list[Call] = field(default_factory=list)
    poll_interval: float | None = None
    """The shortest polling interval the tool uses (seconds)."""
    poll_note: str = ""
    executor_submit_calls: int | None = None
    executor_query_calls: int | None = None
    error: str = ""
    note: str = ""
    detection: list[float] = field(default_factory=list)
    """Per task: seconds from the end of its job (the exit marker's time) to the engine
    recording the task's end (Corral only)."""

    def count(self, *tools: str) -> int:
        return sum(1 for c in self.calls if c.tool in tools)

    @property
    def submits(self) -> int:
        return self.count("sbatch")

    @property
    def status_calls(self) -> int:
        return self.count(*STATUS_TOOLS)

    @property
    def max_status_per_interval(self) -> int | None:
        """Most status calls in any half-open window ``[t, t + poll_interval)``."""
        if self.poll_interval is None:
            return None
        times = sorted(c.when for c in self.calls if c.tool in STATUS_TOOLS)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= self.poll_interval:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


WRAPPER = """#!/bin/bash
# corral bench: log the call (outside SLURM jobs), then run the real command
if [ -z "${{SLURM_JOB_ID:-}}" ] && [ -n "${{{var}:-}}" ]; then
  printf '%s\\t%s\\t%s\\n' "$(date +%s.%N)" "{name}" "$*" >> "${var}"
fi
exec {real} "$@"
"""


def make_wrappers(where: Path) -> Path:
    """A directory of logging wrappers for the SLURM commands found on PATH."""
    bindir = where / "wrap-bin"
    bindir.mkdir(parents=True)
    for name in WRAPPED:
        real = shutil.which(name)
        if real is None:
            continue
        path = bindir / name
        path.write_text(WRAPPER.format(var=LOG_VAR, name=name, real=real))
        path.chmod(0o755)
    return bindir


@contextmanager
def counted(where: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """Wrappers first on PATH (in this process too); yields the log file and the environment."""
    bindir = make_wrappers(where)
    log = where / "slurm-calls.log"
    log.touch()
    saved = {k: os.environ.get(k) for k in ("PATH", LOG_VAR)}
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ[LOG_VAR] = str(log)
    try:
        yield log, dict(os.environ)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def read_calls(log: Path) -> list[Call]:
    calls = []
    for line in log.read_text().splitlines():
        when, tool, args = (line.split("\t", 2) + ["", ""])[:3]
        try:
            calls.append(Call(float(when), tool, args))
        except ValueError:
            continue
    return calls


# ---------------------------------------------------------------------------- Corral

def corral_pipeline() -> Any:
    from corral import pipeline, task

    @task
    def work(i: int) -> int:
        import time

        time.sleep(1)
        return i

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    @pipeline
    def scatter(n: int) -> Any:
        return total(work.map(i=range(n)))

    return scatter


@dataclass
class Workspace:
    path: Path
    keep: bool


@contextmanager
def workspace(m: Measurement, prefix: str, keep: bool) -> Iterator[Workspace]:
    """A temporary directory for one tool's run. An exception inside ends the measurement
    with an error (with its traceback on stderr) rather than the benchmark; the directory is
    removed unless ``keep`` (or the block set ``keep``)."""
    space = Workspace(Path(tempfile.mkdtemp(prefix=prefix)), keep)
    try:
        yield space
    except Exception as exc:
        m.error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        if space.keep:
            print(f"{m.tool} workdir kept: {space.path}", file=sys.stderr)
        else:
            shutil.rmtree(space.path, ignore_errors=True)


def run_corral(n: int, keep: bool) -> Measurement:
    from corral.api import RunConfig, execute

    m = Measurement("Corral")
    engines: list[Any] = []
    with workspace(m, "corral-bench-slurm-", keep) as space:
        tmp = space.path
        with counted(tmp) as (log, _env):
            workdir = tmp / "work"
            workdir.mkdir()
            cfg = RunConfig(executor="slurm", executor_options={"partition": PARTITION},
                            jobs=n + 1, workdir=workdir, new=True)
            start = time.perf_counter()
            result = execute(corral_pipeline(), {"n": n}, cfg, engine_ready=engines.append)
            m.wall = time.perf_counter() - start
            m.calls = read_calls(log)
        ex = engines[0].executor if engines else None
        if ex is not None:
            m.executor_submit_calls = getattr(ex, "submit_calls", None)
            m.executor_query_calls = getattr(ex, "query_calls", None)
            settings = getattr(ex, "settings", None)
            if settings is not None:
                m.poll_interval = float(settings.poll_interval)
                m.poll_note = (f"{settings.poll_interval:g} s, x1.5 while idle, "
                               f"max {settings.max_poll_interval:g} s")
                m.note = f"array_throttle {settings.array_throttle}"
        m.detection = detection_latencies(result.store, result.run_id)
        if not result.ok:
            m.error = f"run ended {result.state.value}: {'; '.join(result.errors[:3])}"
        elif result.value != n * (n - 1) // 2:
            m.error = f"wrong sum {result.value!r}"
        else:
            m.ok = True
    return m


def detection_latencies(store: Any, run_id: str) -> list[float]:
    """Seconds from each attempt's end on the node to the engine recording its task's end."""
    ended = {a["task_id"]: a["ended_at"] for a in store.attempts(run_id)
             if a["state"] == "succeeded" and a["ended_at"]}
    return sorted(t["finished_at"] - ended[t["id"]] for t in store.tasks(run_id)
                  if t["id"] in ended and t["finished_at"])


# ---------------------------------------------------------------------------- Snakemake

SNAKEFILE = """\
N = {n}

localrules: all

wildcard_constraints:
    i=r"\\d+"

rule all:
    input: "total.txt"

rule work:
    output: "out/{{i}}.txt"
    shell: "sleep 1; echo {{wildcards.i}} > {{output}}"

rule gather:
    input: expand("out/{{i}}.txt", i=range(N))
    output: "total.txt"
    shell: "cat {{input}} | awk '{{{{s += $1}}}} END {{{{print s}}}}' > {{output}}"
"""


def ensure_snakemake(venv: Path) -> Path:
    """The snakemake executable of ``venv``, creating the venv and installing it if missing."""
    exe = venv / "bin" / "snakemake"
    probe = [str(venv / "bin" / "python"), "-c",
             "import snakemake, snakemake_executor_plugin_slurm"]
    if exe.exists() and subprocess.run(probe, capture_output=True).returncode == 0:  # noqa: S603
        return exe
    print(f"installing {' '.join(SNAKEMAKE_PACKAGES)} into {venv} ...", file=sys.stderr)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *SNAKEMAKE_PACKAGES],
        check=True,
    )
    return exe


def snakemake_versions(venv: Path) -> str:
    code = ("from importlib.metadata import version as v; "
            "print(f\"snakemake {v('snakemake')}, "
            "snakemake-executor-plugin-slurm {v('snakemake-executor-plugin-slurm')}\")")
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code],  # noqa: S603
                         capture_output=True, text=True)
    return out.stdout.strip() or "?"


def snakemake_argv(exe: Path, n: int, arrays: bool) -> list[str]:
    argv = [
        str(exe), "--snakefile", "Snakefile",
        "--executor", "slurm", "--jobs", str(n),
        "--default-resources", f"slurm_partition={PARTITION}",
        # AccountingStorageEnforce=none on this rig: no account needed (and none guessed)
        "--slurm-no-account",
        "--latency-wait", "30", "--printshellcmds",
    ]
    if arrays:
        argv += ["--slurm-array-jobs", "all"]
    return argv


def run_snakemake(n: int, venv: Path, arrays: bool, keep: bool) -> Measurement:
    m = Measurement("Snakemake (arrays)" if arrays else "Snakemake")
    try:
        exe = ensure_snakemake(venv)
        m.note = snakemake_versions(venv)
    except Exception as exc:
        m.error = f"could not install snakemake into {venv}: {type(exc).__name__}: {exc}"
        return m
    with workspace(m, "snakemake-bench-slurm-", keep) as space:
        tmp = space.path
        with counted(tmp) as (log, env):
            work = tmp / "work"
            work.mkdir()
            (work / "Snakefile").write_text(SNAKEFILE.format(n=n))
            argv = snakemake_argv(exe, n, arrays)
            out = tmp / "snakemake.log"
            start = time.perf_counter()
            with out.open("w") as fh:
                proc = subprocess.run(argv, cwd=work, env=env, stdout=fh,  # noqa: S603
                                      stderr=subprocess.STDOUT, timeout=4 * 3600)
            m.wall = time.perf_counter() - start
            m.calls = read_calls(log)
            m.poll_interval, m.poll_note = snakemake_poll_settings(venv)
            total = work / "total.txt"
            if proc.returncode != 0:
                tail = "\n".join(out.read_text().splitlines()[-15:])
                m.error = f"snakemake exited {proc.returncode}:\n{tail}"
                space.keep = True  # its log is the only account of what went wrong
            elif not total.exists() or total.read_text().strip() != str(n * (n - 1) // 2):
                m.error = f"wrong total {total.read_text().strip() if total.exists() else None!r}"
            else:
                m.ok = True
    return m


def snakemake_poll_settings(venv: Path) -> tuple[float | None, str]:
    """The SLURM plugin's status-check interval, from the installed code.

    The plugin waits ``init_seconds_before_status_checks`` (40 s by default) between status
    queries while jobs finish, adds 10 s per query that saw no job finish (up to 180 s), and
    starts over when one does; Snakemake's own ``--seconds-between-status-checks`` (10 s) only
    applies before the plugin sets its interval.
    """
    code = textwrap.dedent("""
        import snakemake_executor_plugin_slurm as p
        from snakemake.settings.types import RemoteExecutionSettings
        init = p.ExecutorSettings().init_seconds_before_status_checks
        between = RemoteExecutionSettings().seconds_between_status_checks
        print(init, between)
    """)
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code],  # noqa: S603
                         capture_output=True, text=True)
    try:
        init, between = (float(x) for x in out.stdout.split())
    except ValueError:
        return None, "unknown"
    return init, f"{init:g} s, +10 s while idle, max 180 s (first wait {between:g} s)"


# ---------------------------------------------------------------------------- output

def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def table_rows(ms: list[Measurement]) -> list[list[str]]:
    rows = []
    for m in ms:
        cycles = "" if m.executor_query_calls is None else (
            f" ({m.executor_query_calls} query cycles, {m.executor_submit_calls} submits by the"
            " executor's counters)")
        rows.append([
            m.tool,
            fmt(m.wall) if m.ok else ("failed" if m.wall is None else f"{fmt(m.wall)} (failed)"),
            fmt(m.submits) if m.calls else "n/a",
            (f"{m.status_calls:,} ({m.count('sacct')} sacct, {m.count('squeue')} squeue)"
             + cycles) if m.calls else "n/a",
            m.poll_note or "n/a",
            fmt(m.max_status_per_interval) if m.calls else "n/a",
        ])
    return rows


HEADERS = ["Tool", "Wall time (s)", "sbatch calls", "Status calls", "Polling interval",
           "Max status calls per interval"]


def goals(ms: list[Measurement]) -> list[list[str]]:
    corral = next((m for m in ms if m.tool == "Corral"), None)
    snakes = [m for m in ms if m.tool.startswith("Snakemake") and m.ok and m.wall is not None]
    out = []

    def mark(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "NOT met")

    if corral is not None and corral.calls:
        out.append(["Corral: <= 2 submission calls for scatter + gather",
                    fmt(corral.submits), mark(corral.submits <= 2)])
        per = corral.max_status_per_interval
        out.append(["Corral: <= 1 status call per polling interval",
                    f"{fmt(per)} max in any {fmt(corral.poll_interval, 0)} s window",
                    mark(None if per is None else per <= 1)])
        if corral.detection:
            d = corral.detection
            p50, worst = d[len(d) // 2], d[-1]
            out.append(["Corral: a finished job is recorded within 1 s (end of the job to the "
                        "engine's record, per task)", f"median {p50:.2f} s, max {worst:.2f} s "
                        f"over {len(d)} tasks", mark(worst <= 1.0)])
        if corral.executor_query_calls:
            out.append(["Corral: status query cycles (executor's query_calls)",
                        f"{corral.executor_query_calls} cycles, "
                        f"{corral.status_calls / corral.executor_query_calls:.2f} status calls "
                        "per cycle", "info"])
    if corral is not None and corral.ok and corral.wall is not None:
        for s in snakes:
            assert s.wall is not None
            out.append([f"Corral wall time below {s.tool}'s",
                        f"{fmt(corral.wall)} s vs {fmt(s.wall)} s ({corral.wall / s.wall:.2f}x)",
                        mark(corral.wall < s.wall)])
    return out


def print_markdown(ms: list[Measurement], goal_rows: list[list[str]]) -> None:
    def md(headers: list[str], rows: list[list[str]]) -> None:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in r) + " |")

    md(HEADERS, table_rows(ms))
    print()
    md(["Goal", "Measured", "Result"], goal_rows)


def print_table(ms: list[Measurement], goal_rows: list[list[str]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for r in [HEADERS, *table_rows(ms)]:
            print("  ".join(r))
        print()
        for r in goal_rows:
            print("  ".join(r))
        return
    console = Console()
    t = Table(title="SLURM: Corral vs Snakemake")
    for h in HEADERS:
        t.add_column(h)
    for r in table_rows(ms):
        t.add_row(*r)
    console.print(t)
    g = Table(title="Goals")
    for h in ("Goal", "Measured", "Result"):
        g.add_column(h)
    for r in goal_rows:
        g.add_row(*r)
    console.print(g)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=1000, help="scattered tasks (default 1000)")
    ap.add_argument("--quick", action="store_true", help="20 tasks")
    ap.add_argument("--skip-snakemake", action="store_true", help="run Corral only")
    ap.add_argument("--snakemake-arrays", action="store_true",
                    help="also run Snakemake with --slurm-array-jobs=all")
    ap.add_argument("--snakemake-venv", type=Path, default=DEFAULT_VENV,
                    help=f"venv for snakemake (default {DEFAULT_VENV})")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directories")
    args = ap.parse_args(argv)
    n = 20 if args.quick else args.tasks
    if shutil.which("sbatch") is None:
        print("sbatch not found: this benchmark needs a SLURM cluster", file=sys.stderr)
        return 2

    ms: list[Measurement] = []
    print(f"Corral: {n} one-second tasks + gather on SLURM ...", file=sys.stderr)
    ms.append(run_corral(n, args.keep))
    c = ms[0]
    print(f"  Corral: {fmt(c.wall)} s, {c.submits} sbatch, {c.status_calls} status calls"
          f"{'' if c.ok else ' (failed)'}", file=sys.stderr)
    if not args.skip_snakemake:
        variants = [False, True] if args.snakemake_arrays else [False]
        for arrays in variants:
            print(f"Snakemake{' (arrays)' if arrays else ''}: {n} x sleep 1 + gather ...",
                  file=sys.stderr)
            ms.append(run_snakemake(n, args.snakemake_venv.expanduser(), arrays, args.keep))

        for m in ms[1:]:
            print(f"  {m.tool}: {fmt(m.wall)} s, {m.submits} sbatch, {m.status_calls} status calls"
                  f"{'' if m.ok else ' (failed)'}", file=sys.stderr)
    goal_rows = goals(ms)
    print(f"\n{n} one-second tasks + 1 gather, SLURM partition {PARTITION!r}", file=sys.stderr)
    if args.markdown:
        print_markdown(ms, goal_rows)
    else:
        print_table(ms, goal_rows)
    for m in ms:
        if m.note:
            print(f"{m.tool}: {m.note}")
        if m.error:
            print(f"{m.tool} error: {m.error}")
    return 0 if all(m.ok for m in ms) else 1


if __name__ == "__main__":
    sys.exit(main())
