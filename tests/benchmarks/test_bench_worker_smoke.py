"""Smoke test of bench/worker.py: a small round serves its attempts and prints the cost.

No timing is asserted: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "worker.py"


def test_a_small_round_prints_the_cost_per_attempt() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--count", "200", "--repeat", "1", "--profile"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = re.search(r"worker CPU per no-op attempt: (\d+) us", proc.stdout)
    assert found and int(found.group(1)) > 0, proc.stdout
    assert "run_python" in proc.stdout  # the profile of the worker loop
    assert not list(Path(ROOT).glob(".out-*")), "scratch files left in the checkout"


def test_bad_counts_are_refused() -> None:
    proc = subprocess.run(  # noqa: S603
        [sys.executable, str(BENCH), "--count", "0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert proc.returncode == 2 and "--count and --repeat must be >= 1" in proc.stderr
