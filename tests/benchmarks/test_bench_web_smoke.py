"""Smoke test of bench/web.py: a small database, every page answers 200 and the table is printed.
No timing is asserted (it depends on the machine and its load), only that each page was served."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_small_web_benchmark_serves_every_page() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(ROOT / "bench" / "web.py"), "--runs", "120", "--jobs", "40", "--repeat", "2",
         "--markdown"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "ms" not in line]
    names = [row.split("|")[1].strip() for row in rows]
    assert any(n.startswith("runs list, page 1 of 121 runs") for n in names), names
    assert any(n.startswith("run page, real run of 201 tasks") for n in names), names
    assert any(n.startswith("gateway: all jobs (40)") for n in names), names
    assert len(rows) == 13, proc.stdout  # its pages and the two report-context rows
