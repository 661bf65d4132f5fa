"""Smoke test of bench/interactive.py: a tiny round completes and prints its table.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "interactive.py"


def test_a_tiny_round_prints_the_table() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--count", "50", "--repeat", "1", "--markdown"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| Workload | corral.Executor | its submits | its CPU |"), proc.stdout
    assert len(lines) == 3 and "50 no-op submits, 2 workers" in lines[2], proc.stdout
    assert lines[2].rstrip(" |").split("|")[-1].strip() in ("yes", "NO")
    assert "load average" in proc.stdout


def test_sequential_calls_print_ms_per_quarter() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--sequential", "8"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert [r[0] for r in rows] == ["corral.Executor", "ProcessPoolExecutor(2)"], proc.stdout
    assert all(len(r) == 5 and all(float(x) > 0 for x in r[1:]) for r in rows), proc.stdout


def test_sequential_needs_a_call_per_quarter() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--sequential", "3"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2 and "--sequential must be >= 4" in proc.stderr, proc.stderr


def test_calls_after_idleness_print_their_latency() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--idle", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert [r[0] for r in rows] == ["corral.Executor", "ProcessPoolExecutor(2)"], proc.stdout
    assert all(len(r) == 3 and 0 < float(r[1]) <= float(r[2]) for r in rows), proc.stdout
