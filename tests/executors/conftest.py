"""Fixtures of the executor-contract suite: one started executor of each kind, on this machine.

- ``local``: the local process pool.
- ``ssh``: the rig's sshd on 127.0.0.1 (``CORRAL_TEST_SSH_KEY`` / ``CORRAL_TEST_SSH_PORT``, from
  the environment or ``/run/corral-rig/env``; see tests/remote/conftest.py), shared file system.
- ``dask``: a ``LocalCluster`` on 127.0.0.1 (two worker processes), started once per module.
- ``slurm``, ``sge``: the real local clusters; ``pbs``, ``lsf``: the fake schedulers of
  tests/fakes on PATH.

A cluster or sshd that is not there skips its case, unless ``CORRAL_REQUIRE_CLUSTERS=1`` (then
it fails).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.executors import create_executor
from corral.executors.base import Executor, ExecutorContext

TESTS = Path(__file__).resolve().parent.parent
RIG_ENV = Path("/run/corral-rig/env")
CLUSTER_PROBE = {"slurm": ["sinfo", "-h"], "sge": ["qstat", "-f"]}
FAKES = ("pbs", "lsf")
BATCH_FAST = {"poll_interval": 0.2, "max_poll_interval": 1.0, "marker_interval": 0.1,
              "lost_grace": 3.0, "kill_grace": 0.5}


def unavailable(what: str, reason: str) -> None:
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{what} required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"{what} not available: {reason}")


def _rig_value(name: str) -> str | None:
    if os.environ.get(name):
        return os.environ[name]
    try:
        lines = RIG_ENV.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.strip().removeprefix("export ").partition("=")
        if key.strip() == name:
            return value.strip().strip("'\"")
    return None


def ssh_options(root: Path) -> dict[str, Any]:
    """Options of an ssh executor on the rig's loopback sshd (skips without one)."""
    key, port = _rig_value("CORRAL_TEST_SSH_KEY"), _rig_value("CORRAL_TEST_SSH_PORT")
    if not key or not port or not Path(key).is_file():
        unavailable("the test sshd", "CORRAL_TEST_SSH_KEY/CORRAL_TEST_SSH_PORT are not set")
    assert key is not None and port is not None
    try:
        socket.create_connection(("127.0.0.1", int(port)), timeout=3).close()
    except (OSError, ValueError) as exc:
        unavailable("the test sshd", f"nothing listens on 127.0.0.1:{port} ({exc})")
    import getpass

    user = _rig_value("CORRAL_TEST_SSH_USER") or getpass.getuser()
    known_hosts = _rig_value("CORRAL_TEST_SSH_KNOWN_HOSTS")
    return {"hosts": [f"ssh://{user}@127.0.0.1:{port}"], "python": sys.executable,
            "shared_filesystem": True, "remote_workdir": str(root / "remote"),
            "slots_per_host": 16, "poll_interval": 0.3, "kill_grace": 1.0, "identity_file": key,
            "known_hosts": known_hosts if known_hosts and Path(known_hosts).is_file() else None}


def require_cluster(kind: str) -> None:
    probe = CLUSTER_PROBE[kind]
    if shutil.which(probe[0]) is None:
        unavailable(f"the {kind} cluster", f"{probe[0]} is not on PATH")
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=15)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"the {kind} cluster", f"{' '.join(probe)} did not answer: {exc}")
    if proc.returncode != 0:
        unavailable(f"the {kind} cluster", f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}")


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture
def executor_options(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], dict[str, Any]]:
    """``executor_options(kind)``: the options of a fast test executor of ``kind`` (skips, or
    fails under CORRAL_REQUIRE_CLUSTERS=1, when its cluster is absent)."""

    def options(kind: str) -> dict[str, Any]:
        if kind == "local":
            return {"workers": 4}
        if kind == "ssh":
            return ssh_options(tmp_path)
        if kind == "dask":
            return {"address": request.getfixturevalue("dask_address")}
        if kind in FAKES:
            monkeypatch.setenv("PATH", f"{TESTS / 'fakes' / kind}{os.pathsep}{os.environ['PATH']}")
            monkeypatch.setenv("FAKE_SCHED_DIR", str(tmp_path / "fakesched"))
        else:
            require_cluster(kind)
        os.chmod(tmp_path, 0o755)  # the batch jobs read and write the attempt directories
        return dict(BATCH_FAST)

    return options


@pytest.fixture
def make_executor(
    tmp_path: Path, executor_options: Callable[[str], dict[str, Any]]
) -> Iterator[Callable[[str], Executor]]:
    """``make_executor(kind)``: an executor of ``kind`` built by name, as ``--executor`` does, for
    run ``c1`` in ``tmp_path/project``; whatever it still runs at the end is cancelled."""
    made: list[Executor] = []

    def make(kind: str) -> Executor:
        project = tmp_path / "project"
        project.mkdir(exist_ok=True)
        ctx = ExecutorContext("c1", tmp_path / "work" / "c1", project, 16, sys.executable)
        made.append(create_executor(kind, executor_options(kind), ctx))
        return made[-1]

    yield make
    for executor in made:
        executor.shutdown()
