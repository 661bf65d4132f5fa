"""Smoke test of bench/overhead.py: the quick run completes and prints its table.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "overhead.py"


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--quick", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )


def test_quick_benchmark_prints_the_table() -> None:
    proc = run_bench("--markdown")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| Workload | Corral | Corral engine CPU | Peer |")
    rows = lines[2:]
    assert len(rows) == 8, proc.stdout
    for needle in ("no-op Python tasks", "`true` shell tasks", "Littlewood degree",
                   "Build + plan", "Re-check", "Fully cached", "`corral.Executor` submits"):
        assert any(needle in r for r in rows), (needle, proc.stdout)
    for row in rows:
        corral_cell = row.split("|")[2].strip()
        assert corral_cell != "n/a", (row, proc.stderr)  # every Corral half ran
        assert row.rstrip(" |").split("|")[-1].strip() in ("yes", "NO")
    assert "error:" not in proc.stderr, proc.stderr
