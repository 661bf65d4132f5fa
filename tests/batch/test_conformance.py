"""One conformance suite for every batch executor: real SLURM and SGE, fake PBS and LSF.

Each test drives the executor directly: TaskSpecs built by hand, ``submit``, ``poll`` until every
attempt is reported exactly once.
"""

from __future__ import annotations

import pickle
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from corral.engine.engine import summary
from corral.executors.base import AttemptRef, Outcome, TaskKind
from corral.resources import Resources

KINDS = [
    pytest.param("slurm", marks=pytest.mark.slurm),
    pytest.param("sge", marks=pytest.mark.sge),
    "pbs",
    "lsf",
]
CANCEL_TOOL = {"slurm": "scancel", "sge": "qdel", "pbs": "qdel", "lsf": "bkill"}


def square(x: int) -> int:
    return x * x


def boom(message: str) -> None:
    raise ValueError(message)


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def hog(megabytes: int) -> int:
    block = b"x" * (megabytes * 1024 * 1024)
    time.sleep(2)
    return len(block)


def calls_tools() -> list[int]:
    """Prints, runs commands that print, leaves a child and a daemon running; their pids."""
    import os

    print("from python print")
    subprocess.run(["echo", "from child process stdout"], check=True)
    subprocess.run(["sh", "-c", "echo from child stderr >&2"], check=True)
    os.system("echo from os.system")
    print("python again")
    child = subprocess.Popen(["sleep", "1234"])
    daemon = subprocess.Popen(["sh", "-c", "sleep 1235 >/dev/null & echo $!"],
                              stdout=subprocess.PIPE, start_new_session=True)
    return [child.pid, int(daemon.communicate()[0])]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("kind", KINDS)
def test_child_processes_log_in_order_and_end(
    kind: str, harness_for: Callable[[str], Any]
) -> None:
    h = harness_for(kind)
    ex = h.executor()
    spec = h.spec(h.py(calls_tools), group="tools")
    ex.submit([spec])
    c = h.wait(ex, 1)[spec.attempt_id]
    ended = time.monotonic()
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert (spec.workdir / "stdout.log").read_text().splitlines() == [
        "from python print", "from child process stdout", "from os.system", "python again"]
    assert "from child stderr" in (spec.workdir / "stderr.log").read_text()
    assert c.result is not None
    pids = pickle.loads(c.result)
    while not all(_gone(p) for p in pids):
        assert time.monotonic() - ended < 2.0, [p for p in pids if not _gone(p)]
        time.sleep(0.05)
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_scatter_is_one_array_job(kind: str, harness_for: Callable[[str], Any]) -> None:
    h = harness_for(kind)
    ex = h.executor()
    specs = [h.spec(h.py(square, i), group="square") for i in range(5)]
    ex.submit(specs)
    assert ex.submit_calls == 1
    done = h.wait(ex, 5)
    for i, spec in enumerate(specs):
        c = done[spec.attempt_id]
        assert c.outcome is Outcome.SUCCEEDED, c.error
        assert c.result is not None and pickle.loads(c.result) == i * i
        assert c.metrics.native_id == h.listener.native[spec.attempt_id]
        assert c.metrics.submitted is not None and c.metrics.host
    natives = {h.listener.native[s.attempt_id] for s in specs}
    assert len(natives) == 5
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_failures_report_exit_code_and_error(
    kind: str, harness_for: Callable[[str], Any]
) -> None:
    h = harness_for(kind)
    ex = h.executor()
    raising = h.spec(h.py(boom, "the flux capacitor broke"), group="boom")
    shell = h.spec(h.sh("echo to-stderr >&2; exit 3"), group="sh", kind=TaskKind.SHELL)
    ex.submit([raising, shell])
    assert ex.submit_calls == 2  # different groups: two single jobs
    done = h.wait(ex, 2)
    c = done[raising.attempt_id]
    assert c.outcome is Outcome.FAILED
    assert c.error and "ValueError: the flux capacitor broke" in c.error
    c = done[shell.attempt_id]
    assert c.outcome is Outcome.FAILED
    assert c.metrics.exit_code == 3
    assert c.error and "status 3" in c.error and "to-stderr" in c.error
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_declared_outputs_get_their_folders(kind: str, harness_for: Callable[[str], Any]) -> None:
    h = harness_for(kind)
    ex = h.executor()
    spec = h.spec(h.sh("echo made > csv/deep/a.csv", ["csv/deep/a.csv"]), group="sh", kind=TaskKind.SHELL)
    ex.submit([spec])
    c = h.wait(ex, 1)[spec.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert (spec.cwd / "csv" / "deep" / "a.csv").read_text() == "made\n"
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_external_cancel_is_cancelled(kind: str, harness_for: Callable[[str], Any]) -> None:
    h = harness_for(kind)
    ex = h.executor()
    spec = h.spec(h.py(nap, 120), group="nap")
    ex.submit([spec])
    h.wait_started(spec.attempt_id, ex)
    native = h.listener.native[spec.attempt_id]
    subprocess.run([CANCEL_TOOL[kind], native], check=True, capture_output=True)  # noqa: S603
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.CANCELLED, c.error
    assert c.error and native in c.error
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_through_executor(kind: str, harness_for: Callable[[str], Any]) -> None:
    h = harness_for(kind)
    ex = h.executor()
    specs = [h.spec(h.py(nap, 120), group="nap") for _ in range(2)]
    ex.submit(specs)
    h.wait_started(specs[0].attempt_id, ex)
    ex.cancel([s.attempt_id for s in specs])
    done = h.wait(ex, 2, timeout=60)
    assert {c.outcome for c in done.values()} == {Outcome.CANCELLED}
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_reattach_after_engine_restart(kind: str, harness_for: Callable[[str], Any]) -> None:
    h = harness_for(kind)
    first = h.executor()
    spec = h.spec(h.py(nap, 3), group="nap")
    first.submit([spec])
    native = h.listener.native[spec.attempt_id]
    first.shutdown()  # the engine goes away; the job keeps running
    second = h.executor()
    refs = [
        AttemptRef(spec.attempt_id, native, spec.workdir, time.time()),
        AttemptRef("t1.999.1", "987654", h.root / "work" / "gone" / "1", None),
    ]
    if kind == "pbs":
        refs[1] = AttemptRef("t1.999.1", "987654.fakepbs", refs[1].workdir, None)
    assert second.reattach(refs) == [spec.attempt_id]
    c = h.wait(second, 1)[spec.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert c.result is not None and pickle.loads(c.result) == "rested"
    assert c.metrics.native_id == native
    second.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_job_ending_without_marker_is_lost(
    kind: str, harness_for: Callable[[str], Any]
) -> None:
    h = harness_for(kind)
    ex = h.executor(setup=["exit 0"], lost_grace=1.0)  # the script ends before the worker
    spec = h.spec(h.py(square, 2), group="sq")
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.LOST, c.error
    assert c.error and "exit marker" in c.error
    ex.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_max_jobs_keeps_specs_queued(kind: str, harness_for: Callable[[str], Any]) -> None:
    h = harness_for(kind)
    ex = h.executor(max_jobs=2, array_throttle=2)
    specs = [h.spec(h.py(square, i), group="square") for i in range(4)]
    assert ex.capacity() == 2
    ex.submit(specs)
    assert ex.capacity() == 0
    assert len(h.listener.native) == 2  # the rest waits locally
    done = h.wait(ex, 4)
    assert all(c.outcome is Outcome.SUCCEEDED for c in done.values())
    assert ex.capacity() == 2
    ex.shutdown()


@pytest.mark.slurm
def test_slurm_out_of_memory(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("slurm")
    ex = h.executor()
    spec = h.spec(h.py(hog, 300), group="hog", resources=Resources(memory="100M"))
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.OUT_OF_MEMORY, c.error
    assert c.error and "memory=100M" in c.error
    # Corral's classification comes first, with the peak it saw: the one-line summary starts so
    first = summary(c).split(" | ")[0]
    assert first.startswith(f"out of memory: slurm job {c.metrics.native_id} asked for memory=100M, peak "), first


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_timeout(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("slurm")
    ex = h.executor()
    spec = h.spec(h.py(nap, 600), group="nap", resources=Resources(walltime=5))
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=200)[spec.attempt_id]
    assert c.outcome is Outcome.TIMEOUT, c.error
    assert summary(c).startswith(f"timeout: slurm job {c.metrics.native_id} asked for walltime="), c.error
    assert "TIME LIMIT" in summary(c).split(" | ")[-1], c.error  # then SLURM's own line


@pytest.mark.sge
def test_sge_timeout(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("sge")
    ex = h.executor()
    spec = h.spec(h.py(nap, 120), group="nap", resources=Resources(walltime=5))
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=90)[spec.attempt_id]
    assert c.outcome is Outcome.TIMEOUT, c.error
    assert summary(c).startswith(f"timeout: sge job {c.metrics.native_id} asked for walltime=00:00:05;"), c.error


def test_pbs_fake_walltime_is_timeout(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("pbs")
    ex = h.executor()
    spec = h.spec(h.py(nap, 120), group="nap", resources=Resources(walltime=2))
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.TIMEOUT, c.error


@pytest.mark.sge
def test_sge_error_state_is_deleted_and_failed(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("sge")
    ex = h.executor(setup=["exit 100"])  # exit 100 leaves the job in Eqw
    spec = h.spec(h.py(square, 2), group="sq")
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.FAILED, c.error
    assert c.error and "ERROR_HELD" in c.error and "deleted" in c.error
    native = h.listener.native[spec.attempt_id]
    time.sleep(1)
    listing = subprocess.run(["qstat"], capture_output=True, text=True).stdout
    assert not any(line.split()[:1] == [native] for line in listing.splitlines())


@pytest.mark.slurm
def test_slurm_without_accounting_uses_squeue(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("slurm")
    ex = h.executor(accounting="none", setup=["exit 0"], lost_grace=1.0)
    spec = h.spec(h.py(square, 3), group="sq")
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.LOST, c.error  # learned from squeue -t all: COMPLETED, no marker
    assert "COMPLETED" in (c.error or "")


def run_and_exit(code: int, runs: str) -> None:
    """Counts its runs in ``runs``, then ends the worker process itself with ``code``."""
    import os

    with open(runs, "a") as fh:
        fh.write("ran\n")
    os._exit(code)


@pytest.mark.sge
@pytest.mark.parametrize("code", [99, 100])
def test_sge_exit_99_and_100_are_plain_failures(code: int,
                                                harness_for: Callable[[str], Any]) -> None:
    """Grid Engine re-queues a job that exits 99 and holds one that exits 100 in Eqw: a task
    (or the worker itself) exiting so is a plain failure, reported at once, run once, with its
    real exit code."""
    h = harness_for("sge")
    ex = h.executor(lost_grace=60.0)  # a failure must not wait for the no-marker grace
    shell_runs, py_runs = h.root / f"shell-{code}.runs", h.root / f"py-{code}.runs"
    shell = h.spec(h.sh(f"echo ran >> {shell_runs}; echo bye >&2; exit {code}"), group="sh",
                   kind=TaskKind.SHELL)
    hard = h.spec(h.py(run_and_exit, code, str(py_runs)), group="hard")
    started = time.monotonic()
    ex.submit([shell, hard])
    done = h.wait(ex, 2, timeout=60)
    assert time.monotonic() - started < 40
    for spec in (shell, hard):
        c = done[spec.attempt_id]
        assert c.outcome is Outcome.FAILED, c.error
        assert c.metrics.exit_code == code, c
    assert f"status {code}" in (done[shell.attempt_id].error or "")
    assert f"exited with status {code}" in (done[hard.attempt_id].error or "")
    assert f"status {code}" in (hard.workdir / "stderr.log").read_text()
    time.sleep(3)  # a re-queued job would run again by now
    assert shell_runs.read_text() == py_runs.read_text() == "ran\n"
    listing = subprocess.run(["qstat"], capture_output=True, text=True).stdout
    natives = {h.listener.native[s.attempt_id] for s in (shell, hard)}
    assert not [line for line in listing.splitlines() if set(line.split()[:1]) & natives]
    ex.shutdown()
