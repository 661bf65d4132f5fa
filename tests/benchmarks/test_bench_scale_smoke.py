"""Smoke test of bench/scale.py: a quick run completes and prints its table, one row per step
and size. No timing is asserted: the numbers depend on the machine and its load."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "scale.py"


def test_quick_scale_benchmark_prints_the_table() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--quick", "--markdown"],
        capture_output=True, text=True, timeout=180, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| Step | Tasks | Wall s | CPU s | us/task | Peak RSS MiB |")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [
        (step, n) for n in ("1,000", "2,000") for step in ("plan", "run", "recheck", "status")
    ], proc.stdout
    for row in rows:
        assert float(row[2]) > 0 and float(row[5]) > 0, row  # wall seconds, peak RSS measured
    assert "error:" not in proc.stderr, proc.stderr
