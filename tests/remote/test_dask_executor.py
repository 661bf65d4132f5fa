"""The dask executor: conformance on a shared LocalCluster (``address``), cancellation and
resources on clusters the executor starts itself, running attempts killed by cancellation, a
walltime or the workers' memory limit, and option validation."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from remote_helpers import (
    Recorder,
    Workspace,
    attempt_log,
    check_cancel,
    check_children,
    check_failure,
    check_scatter,
    check_shell_output,
    process_gone,
    python_payload,
    read_env,
    shell_payload,
    sleeper,
    square,
    wait_all,
)

from corral.errors import ConfigError, ResourceError
from corral.executors import create_executor
from corral.executors.base import Completion, Executor, ExecutorContext, Outcome, TaskKind
from corral.executors.dask import DaskExecutor
from corral.resources import Resources
from corral.worker.metrics import hostname

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # task functions below

distributed = pytest.importorskip("distributed")

Factory = Callable[..., DaskExecutor]


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    """One LocalCluster shared by the conformance tests (started once: ~2 s)."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture
def make_executor(workspace: Workspace) -> Iterator[Factory]:
    made: list[DaskExecutor] = []

    def make(**options: Any) -> DaskExecutor:
        executor = create_executor("dask", options, workspace.context(max_parallel=4))
        assert isinstance(executor, DaskExecutor)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.shutdown()


def test_scatter(make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor(address=cluster_address)
    check_scatter(executor, workspace, recorder)
    assert all(n.startswith("corral-") for n in recorder.submitted_ids.values())


def test_failure(make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder) -> None:
    check_failure(make_executor(address=cluster_address), workspace, recorder)


def test_shell_output(make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder) -> None:
    check_shell_output(make_executor(address=cluster_address), workspace, recorder)


def test_child_processes_log_and_end(
    make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder
) -> None:
    check_children(make_executor(address=cluster_address), workspace, recorder)


def test_env_stdout_and_ignored_resources(
    make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder
) -> None:
    executor = make_executor(address=cluster_address)
    executor.start(recorder)
    big = Resources(cores=64, memory="1T", gpus=2)  # ignored without resources = true
    executor.validate(big)
    env = workspace.spec(python_payload(read_env, "CORRAL_T"), env={"CORRAL_T": "x y"})
    sq = workspace.spec(python_payload(square, 5), resources=big)
    executor.submit([env, sq])
    done = wait_all(executor, {env.attempt_id, sq.attempt_id})
    assert pickle.loads(done[env.attempt_id].result or b"") == "x y"
    assert attempt_log(sq, done[sq.attempt_id], "stdout.log") == "squaring 5\n"
    assert executor.capacity() == 4


def test_cancel_on_owned_cluster(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor(n_workers=2)  # the cancelled task keeps its worker busy
    check_cancel(executor, workspace, recorder)
    assert executor.describe()["address"].startswith("tcp://127.0.0.1:")


def test_resources_mode(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor(n_workers=1, threads_per_worker=2, resources=True, processes=False)
    executor.start(recorder)
    with pytest.raises(ResourceError, match="threads_per_worker"):
        executor.validate(Resources(cores=3))
    with pytest.raises(ResourceError):
        executor.validate(Resources(gpus=1))
    spec = workspace.spec(python_payload(square, 3), resources=Resources(cores=2))
    executor.submit([spec])
    c = wait_all(executor, {spec.attempt_id})[spec.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED and pickle.loads(c.result or b"") == 9


def test_options_are_validated(tmp_path: Path) -> None:
    ctx = ExecutorContext("r", tmp_path, tmp_path, 4)
    with pytest.raises(ConfigError) as err:
        DaskExecutor.from_options({"workers": 2}, ctx)
    assert "unknown dask executor option(s) workers" in str(err.value)
    assert "n_workers" in str(err.value)
    with pytest.raises(ConfigError, match="positive integer"):
        DaskExecutor.from_options({"threads_per_worker": 0}, ctx)
    with pytest.raises(ConfigError, match="true or false"):
        DaskExecutor.from_options({"processes": "yes"}, ctx)
    ok = DaskExecutor.from_options({"address": "tcp://127.0.0.1:1"}, ctx)
    assert ok.settings.threads_per_worker == 1 and ok.settings.processes is True


# ---------------------------------------------------------------------------------- interruption


def sleep_with_child(seconds: float, pid_file: str) -> str:
    """Start a ``sleep`` subprocess, write both pids, sleep: a task stuck in its code."""
    child = subprocess.Popen(["sleep", str(seconds)])  # noqa: S603 - fixed argv
    Path(pid_file).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(seconds)
    return "woke"


def hog(megabytes: int) -> int:
    block = bytearray(megabytes * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(30)
    return len(block)


SHELL_SLEEP = "sleep 60 & echo $$ $! > {pid_file}; wait"


def _pids(path: Path, executor: Executor, seen: dict[str, Completion]) -> list[int]:
    deadline = time.monotonic() + 60
    while not (path.exists() and len(path.read_text().split()) == 2):
        assert time.monotonic() < deadline, f"{path} never appeared"
        seen.update((c.attempt_id, c) for c in executor.poll(0.2))
    return [int(p) for p in path.read_text().split()]


def _assert_all_gone(pids: list[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not all(process_gone(p) for p in pids):
        alive = [p for p in pids if not process_gone(p)]
        assert time.monotonic() < deadline, f"processes {alive} survived"
        time.sleep(0.05)


def test_cancel_kills_running_attempts(
    make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder
) -> None:
    """Cancelling stops a running Python task (and its subprocess) and a running shell command
    at once; the workers then run the next attempts."""
    executor = make_executor(address=cluster_address)
    executor.start(recorder)
    py_pids, sh_pids = workspace.root / "py.pids", workspace.root / "sh.pids"
    py = workspace.spec(python_payload(sleep_with_child, 60, str(py_pids)))
    sh = workspace.spec(shell_payload(SHELL_SLEEP.format(pid_file=sh_pids)), kind=TaskKind.SHELL)
    executor.submit([py, sh])
    seen: dict[str, Completion] = {}
    pids = _pids(py_pids, executor, seen) + _pids(sh_pids, executor, seen)
    assert not seen, "the sleeping tasks ended early"
    cancelled_at = time.monotonic()
    executor.cancel([py.attempt_id, sh.attempt_id])
    done = wait_all(executor, {py.attempt_id, sh.attempt_id}, timeout=10)
    assert {c.outcome for c in done.values()} == {Outcome.CANCELLED}
    _assert_all_gone(pids)
    assert time.monotonic() - cancelled_at < 6
    quick = [workspace.spec(python_payload(square, i)) for i in range(3)]
    executor.submit(quick)
    after = wait_all(executor, {q.attempt_id for q in quick}, timeout=30)
    assert all(c.outcome is Outcome.SUCCEEDED for c in after.values())


def test_running_attempts_are_reported_started(
    make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder
) -> None:
    """A running Python task and shell command are reported started, with the worker's host,
    while they run (from the workers' start events, not from their results); each once."""
    executor = make_executor(address=cluster_address)
    executor.start(recorder)
    calls: list[tuple[str, float, str | None]] = []
    record = recorder.started

    def counting(attempt_id: str, when: float, host: str | None) -> None:
        calls.append((attempt_id, when, host))
        record(attempt_id, when, host)

    recorder.started = counting  # type: ignore[method-assign]
    flag = workspace.root / "nap.flag"
    py = workspace.spec(python_payload(sleeper, 60, str(flag)))
    sh = workspace.spec(shell_payload("sleep 60"), kind=TaskKind.SHELL)
    submitted = time.time()
    executor.submit([py, sh])
    deadline = time.monotonic() + 30
    while not {py.attempt_id, sh.attempt_id} <= set(recorder.started_at):
        assert time.monotonic() < deadline, f"no start reported: {recorder.started_at}"
        assert executor.poll(0.2) == [], "a 60 s task ended"
    for spec in (py, sh):
        when, host = recorder.started_at[spec.attempt_id]
        assert host == hostname()
        assert submitted - 1 < when < time.time()
    assert flag.exists()  # the Python task is really running
    executor.cancel([py.attempt_id, sh.attempt_id])
    done = wait_all(executor, {py.attempt_id, sh.attempt_id}, timeout=10)
    assert {c.outcome for c in done.values()} == {Outcome.CANCELLED}
    assert sorted(aid for aid, _, _ in calls) == sorted([py.attempt_id, sh.attempt_id])


def test_walltime_is_enforced(
    make_executor: Factory, cluster_address: str, workspace: Workspace, recorder: Recorder
) -> None:
    """A Python task and a shell command past their walltime are killed and reported TIMEOUT
    within seconds; the worker stays usable, and a retry with more walltime succeeds."""
    executor = make_executor(address=cluster_address)
    executor.start(recorder)
    py_pids, sh_pids = workspace.root / "py.pids", workspace.root / "sh.pids"
    short = Resources(walltime=2)
    py = workspace.spec(python_payload(sleep_with_child, 60, str(py_pids)), resources=short)
    sh = workspace.spec(shell_payload(SHELL_SLEEP.format(pid_file=sh_pids)), kind=TaskKind.SHELL,
                        resources=short)
    started = time.monotonic()
    executor.submit([py, sh])
    done = wait_all(executor, {py.attempt_id, sh.attempt_id}, timeout=30)
    assert time.monotonic() - started < 20
    for c in done.values():
        assert c.outcome is Outcome.TIMEOUT, c.error
        assert "walltime of 2 s" in (c.error or "")
        assert c.metrics.wall is not None and 1.9 < c.metrics.wall < 6
        assert c.metrics.native_id == recorder.submitted_ids[c.attempt_id]
    _assert_all_gone([int(p) for f in (py_pids, sh_pids) for p in f.read_text().split()])

    first = workspace.spec(python_payload(sleeper, 3), resources=Resources(walltime=1))
    executor.submit([first])
    assert wait_all(executor, {first.attempt_id})[first.attempt_id].outcome is Outcome.TIMEOUT
    retry = workspace.spec(python_payload(sleeper, 3), resources=Resources(walltime=30))
    retry.attempt = 2
    executor.submit([retry])
    c = wait_all(executor, {retry.attempt_id})[retry.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert pickle.loads(c.result or b"") == "woke"


def test_memory_limit_of_the_workers_is_enforced(workspace: Workspace, recorder: Recorder) -> None:
    """Tasks run outside the dask worker process, so the executor applies the worker's
    ``memory_limit`` to the attempt's process tree."""
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=":0",
                                       memory_limit="600MiB")
    try:
        executor = create_executor("dask", {"address": cluster.scheduler_address},
                                   workspace.context(max_parallel=1))
        executor.start(recorder)
        spec = workspace.spec(python_payload(hog, 800))
        executor.submit([spec])
        c = wait_all(executor, {spec.attempt_id}, timeout=60)[spec.attempt_id]
        assert c.outcome is Outcome.OUT_OF_MEMORY, c.error
        assert "memory_limit of 600 MiB" in (c.error or "")
        executor.shutdown()
    finally:
        cluster.close()
