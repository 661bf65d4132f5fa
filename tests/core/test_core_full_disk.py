"""A full disk under the state store: the run stops with one line (exit 4), keeps what it had
committed, and the same command resumes once there is room. Uses a small tmpfs (root only)."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PIPE = '''
import time
from corral import pipeline, task

@task
def blob(i: int, log: str) -> bytes:
    with open(log, "a") as fh:  # outside the small disk: which tasks really ran
        fh.write(f"{i}\\n")
    time.sleep(0.2)  # slow enough for the engine to commit some results before the disk fills
    return bytes([i % 256]) * 400_000

@task
def total(parts: list[bytes]) -> int:
    return sum(len(p) for p in parts)

@pipeline
def big(log: str, n: int = 12) -> int:
    return total(blob.map(i=range(n), log=log))
'''


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(where)],  # noqa: S603
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)  # noqa: S603


def _corral(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral", *args], cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=120)


def test_full_disk_stops_with_one_line_and_the_same_command_resumes(
    small_disk: Path, tmp_path: Path,
) -> None:
    (small_disk / "big.py").write_text(PIPE)
    log = tmp_path / "ran.log"
    args = ["run", "big.py", "--log", str(log), "-j", "2", "-q"]

    full = _corral(*args, cwd=small_disk)
    assert full.returncode == 4, (full.stdout, full.stderr)
    lines = [line for line in full.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the state store's disk is full"), lines
    assert "free some space" in lines[0] and "run the same command again" in lines[0]
    with sqlite3.connect(small_disk / ".corral" / "state.db") as db:
        kept = {name for (name,) in db.execute(
            "SELECT name FROM tasks WHERE state = 'succeeded' AND name LIKE 'blob%'")}
    assert kept, "nothing was committed before the disk filled up"
    first = log.read_text().split()

    subprocess.run(["mount", "-o", "remount,size=64M", str(small_disk)], check=True)  # noqa: S603
    again = _corral(*args, cwd=small_disk)
    assert again.returncode == 0, again.stderr
    # the same run goes on: taken over when the engine's release did not reach the full disk,
    # resumed as interrupted when it did (how much room the failed write left decides which)
    assert re.search(r"took over run \S+ from a dead engine|resuming run \S+ \(interrupted\)",
                     again.stderr), again.stderr
    with sqlite3.connect(small_disk / ".corral" / "state.db") as db:
        runs = db.execute("SELECT state FROM runs").fetchall()
    assert runs == [("succeeded",)], runs  # one run, resumed, not a second one started
    assert "result: 4800000" in again.stdout
    rerun = log.read_text().split()[len(first):]
    assert not {f"blob[{i}]" for i in rerun} & kept, (kept, rerun)  # committed work not redone
    assert sorted(set(first) | set(rerun), key=int) == [str(i) for i in range(12)]
