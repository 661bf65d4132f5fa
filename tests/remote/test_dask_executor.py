"""The dask executor: conformance on a shared LocalCluster (``address``), cancellation and
resources on clusters the executor starts itself, and option validation."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import (
    Recorder,
    Workspace,
    check_cancel,
    check_failure,
    check_scatter,
    check_shell_output,
    python_payload,
    read_env,
    square,
    wait_all,
)

from corral.errors import ConfigError, ResourceError
from corral.executors import create_executor
from corral.executors.base import ExecutorContext, Outcome
from corral.executors.dask import DaskExecutor
from corral.resources import Resources

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
    assert done[sq.attempt_id].stdout == "squaring 5\n"
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
