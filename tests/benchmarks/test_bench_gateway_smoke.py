"""Smoke test of bench/gateway.py: a small database, a real gateway process, client processes, the
table is printed.
No timing is asserted (it depends on the machine and its load), only that every request succeeded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_gateway_benchmark_prints_its_table() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "bench" / "gateway.py"), "--jobs", "50", "--reads", "100", "--submissions", "20",
         "--clients", "2", "--markdown"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split("|")[1].strip() for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows == ["request", "GET /api/v1/jobs/{id} (50 jobs in the database)", "POST /api/v1/jobs (after 50 jobs)"]
    assert "| server CPU ms/request | client CPU ms/request |" in proc.stdout and "2 client processes" in proc.stdout
    assert "goal (>= 1,000 status reads/s" in proc.stdout
