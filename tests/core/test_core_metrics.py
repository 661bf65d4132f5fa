"""Metrics per attempt: times, CPU, peak memory (Python and shell), I/O, exit code, host."""

from __future__ import annotations

import socket
import sys

from .corehelp import Helper

MB = 1024**2
ALLOC = 200 * MB

METRICS_PIPE = f'''
import time
from pathlib import Path
from corral import task, pipeline, shell

@task
def empty() -> int:
    return 0

@task
def allocate(after: int, size: int) -> int:
    block = bytearray(size)
    for i in range(0, size, 4096):
        block[i] = 1
    time.sleep(0.3)
    return len(block) + after

@task
def small(after: int) -> int:
    return after + 1

@task
def sleeper() -> float:
    time.sleep(1.0)
    return 1.0

@task
def spin(seconds: float) -> int:
    end, n = time.process_time() + seconds, 0
    while time.process_time() < end:
        n += 1
    return n

@task
def writer(name: str, size: int) -> Path:
    with open(name, "wb") as fh:
        fh.write(b"x" * size)
    return Path(name)

@pipeline
def measured():
    base = empty()
    big = allocate(base, {ALLOC})
    sh = shell(
        "{sys.executable} -c 'b = bytearray({ALLOC}); b[::4096] = b\\"\\\\1\\" * len(b[::4096]); "
        "import time; time.sleep(0.3)' && touch {{output}}",
        outputs="shell.done", name="shell_alloc")
    nap = shell("sleep 1 && touch {{output}}", outputs="nap.done", name="nap")
    return big, small(big), sleeper(), spin(0.5), writer("big.bin", 5 * {MB}), sh, nap
'''


def test_metrics_per_attempt(helper: Helper) -> None:
    pipe = helper.load(METRICS_PIPE)
    r = helper.run(pipe, jobs=1)
    assert r.ok, r.errors
    rows = {a["task"]: a for a in helper.attempts(r.run_id)}
    assert set(rows) == {"empty", "allocate", "small", "sleeper", "spin", "writer", "shell_alloc",
                         "nap"}
    host = socket.gethostname()
    for name, a in rows.items():
        assert a["state"] == "succeeded", name
        assert a["host"] == host, name
        assert a["exit_code"] == 0, name
        assert a["started_at"] and a["ended_at"] and a["ended_at"] >= a["started_at"], name
        assert a["submitted_at"] <= a["started_at"] + 0.5, name
        assert abs(a["wall"] - (a["ended_at"] - a["started_at"])) < 1e-3, name
        assert a["cpu_user"] is not None and a["cpu_system"] is not None, name
        assert a["peak_rss"] and a["peak_rss"] > 1 * MB, name

    sleep = rows["sleeper"]
    assert 0.9 <= sleep["wall"] < 2.5
    assert sleep["cpu_user"] + sleep["cpu_system"] < 0.2

    spin = rows["spin"]
    assert spin["cpu_user"] + spin["cpu_system"] >= 0.4

    # peak RSS of the allocating task, compared with an empty task in the same worker
    baseline = rows["empty"]["peak_rss"]
    grown = rows["allocate"]["peak_rss"] - baseline
    assert abs(grown - ALLOC) <= 0.1 * ALLOC, (baseline, rows["allocate"]["peak_rss"])
    # the next task in that worker (-j 1: one worker) starts from a reset high-water mark
    assert rows["small"]["peak_rss"] - baseline < 0.1 * ALLOC, rows["small"]["peak_rss"]

    writer = rows["writer"]
    assert writer["write_bytes"] >= 5 * MB
    assert writer["read_bytes"] is not None

    # shell tasks: CPU and peak memory of the whole command from wait4
    shell_peak = rows["shell_alloc"]["peak_rss"]
    assert ALLOC <= shell_peak <= 1.1 * ALLOC + 40 * MB, shell_peak
    assert 0.9 <= rows["nap"]["wall"] < 2.5
    assert rows["nap"]["cpu_user"] + rows["nap"]["cpu_system"] < 0.2
    assert rows["nap"]["peak_rss"] < 50 * MB


def test_shell_exit_code_recorded_on_failure(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import pipeline, shell
        @pipeline
        def code():
            return shell("exit 7", name="seven")
    ''')
    r = helper.run(pipe)
    (a,) = helper.attempts(r.run_id)
    assert a["exit_code"] == 7 and a["state"] == "failed" and a["wall"] is not None
    assert sys.executable  # the venv interpreter runs the shell allocation above


def test_tiny_tasks_sent_together_each_get_their_own_start(helper: Helper) -> None:
    """Tiny tasks travel to a worker in chunks; only the first of a chunk is reported started
    when it is sent, the others when they end: each attempt still records where and when it
    started and ended, in the order the worker ran them."""
    pipe = helper.load('''
        from corral import task, pipeline

        @task
        def tiny(i: int) -> int:
            return i

        @pipeline
        def many():
            return tiny.map(i=list(range(200)))
    ''')
    r = helper.run(pipe, jobs=1)
    assert r.ok, r.errors
    rows = sorted(helper.attempts(r.run_id), key=lambda a: a["started_at"])
    assert len(rows) == 200
    host = socket.gethostname()
    for a in rows:
        assert a["state"] == "succeeded" and a["host"] == host, a
        assert a["submitted_at"] <= a["started_at"] <= a["ended_at"], a
    # one worker (-j 1) ran them one after another: the starts are the worker's own
    ends = [a["ended_at"] for a in rows]
    assert ends == sorted(ends)
    assert len({a["started_at"] for a in rows}) == len(rows)


def test_peak_memory_of_a_task_and_its_child_together(helper: Helper) -> None:
    """A task's peak memory counts the processes it started while they ran beside it (the
    worker's monitor thread sums the tree), not only the largest of them."""
    pipe = helper.load(f'''
        import subprocess, sys, time
        from corral import task, pipeline

        @task
        def warm() -> int:
            return 0

        @task
        def both(after: int) -> int:
            mine = bytearray({ALLOC})
            for i in range(0, len(mine), 4096):
                mine[i] = 1
            child = subprocess.Popen([sys.executable, "-c",
                "b = bytearray({ALLOC})\\nfor i in range(0, len(b), 4096): b[i] = 1\\n"
                "import time; time.sleep(1.0)"])
            child.wait()
            return len(mine) + after

        @pipeline
        def tree():
            return both(warm())
    ''')
    r = helper.run(pipe, jobs=1)
    assert r.ok, r.errors
    rows = {a["task"]: a for a in helper.attempts(r.run_id)}
    assert rows["both"]["peak_rss"] >= 1.8 * ALLOC, rows["both"]["peak_rss"]


def test_the_monitor_samples_again_after_it_parked() -> None:
    """The monitor thread parks when no task ran for a while, and samples the next task's
    processes when it begins."""
    import subprocess
    import time

    from corral.worker.metrics import TreeMonitor

    monitor = TreeMonitor(interval=0.02)
    monitor.PARK_AFTER = 0.1
    monitor.begin()
    monitor.end()
    time.sleep(0.4)  # parked by now
    child = subprocess.Popen([sys.executable, "-c",  # noqa: S603
                              f"b = bytearray({ALLOC})\nfor i in range(0, len(b), 4096): b[i] = 1\n"
                              "import time; time.sleep(1.0)"])
    try:
        time.sleep(0.5)  # (allocated by now)
        monitor.begin()
        time.sleep(0.3)
        peak = monitor.end()
    finally:
        child.kill()
        child.wait()
    assert peak >= 0.9 * ALLOC, peak
