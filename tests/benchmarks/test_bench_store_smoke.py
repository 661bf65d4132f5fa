"""Smoke test of bench/store.py: a small run on SQLite completes, checks the store, prints its
table. No timing is asserted (it depends on the machine and its load), only the checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_store_benchmark_runs_and_checks() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "bench" / "store.py"), "--engines", "3", "--tasks", "40",
         "--markdown"], capture_output=True, text=True, timeout=180, cwd=ROOT)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| SQLite")]
    assert len(rows) == 2, proc.stdout + proc.stderr
    assert rows[0].startswith("| SQLite | 1 x 40 |") and rows[1].startswith("| SQLite | 3 x 40 |")
    assert all(row.rstrip(" |").endswith("| none") for row in rows), rows  # no problem found
    assert "no 'database is locked'" in proc.stdout
