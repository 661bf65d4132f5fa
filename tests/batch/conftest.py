"""Shared fixtures of the batch-executor tests: cluster checks, fake schedulers, a harness.

Real-cluster tests skip when ``sbatch``/``qsub`` is missing or the cluster does not answer,
unless ``CORRAL_REQUIRE_CLUSTERS=1`` is set, in which case they fail.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from corral.executors import create_executor, executor_class
from corral.executors.base import AttemptRef, Completion, ExecutorContext, TaskKind, TaskSpec
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.settings import parse_settings
from corral.resources import Resources
from corral.transport.base import Transport
from corral.worker.execute import PythonPayload, ShellPayload

TESTS = Path(__file__).resolve().parent.parent
FAKES = TESTS / "fakes"
REAL = {"slurm": ("sbatch", ["sinfo", "-h"]), "sge": ("qsub", ["qstat", "-f"])}
FAST = {
    "poll_interval": 0.2,
    "max_poll_interval": 1.0,
    "marker_interval": 0.1,
    "lost_grace": 3.0,
    "kill_grace": 0.5,
}
_checked: dict[str, str | None] = {}


def _unavailable(kind: str) -> str | None:
    """Why the real ``kind`` cluster cannot be used (None: it answers)."""
    if kind not in _checked:
        tool, probe = REAL[kind]
        reason = None
        if shutil.which(tool) is None:
            reason = f"{tool} is not on PATH"
        else:
            try:
                proc = subprocess.run(  # noqa: S603 - fixed probe argv
                    probe, capture_output=True, text=True, timeout=15
                )
                if proc.returncode != 0:
                    reason = f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}"
            except (OSError, subprocess.TimeoutExpired) as exc:
                reason = f"{' '.join(probe)} did not answer: {exc}"
        _checked[kind] = reason
    return _checked[kind]


def require_cluster(kind: str) -> None:
    reason = _unavailable(kind)
    if reason is None:
        return
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{kind} cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"{kind} cluster not available: {reason}")


class Recorder:
    """A listener that remembers native ids and start times."""

    def __init__(self) -> None:
        self.native: dict[str, str] = {}
        self.starts: dict[str, float] = {}

    def submitted(self, attempt_id: str, native_id: str) -> None:
        self.native[attempt_id] = native_id

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        self.starts[attempt_id] = when


class Harness:
    """Builds executors, specs and payloads for one test; waits for completions."""

    def __init__(self, kind: str, root: Path) -> None:
        self.kind = kind
        self.root = root
        self.ctx = ExecutorContext(
            run_id="t1", work_root=root / "work", cwd=root, max_parallel=8, python=sys.executable
        )
        self.listener = Recorder()
        self.counter = 0
        self.executors: list[BatchExecutor] = []

    def executor(self, transport: Transport | None = None, **options: Any) -> BatchExecutor:
        """An executor with fast test intervals, started with this harness's listener."""
        if transport is None:
            ex = create_executor(self.kind, {**FAST, **options}, self.ctx)
        else:
            cls = executor_class(self.kind)
            assert issubclass(cls, BatchExecutor)
            settings = parse_settings(cls.settings_class, {**FAST, **options}, self.kind)
            ex = cls(settings, self.ctx, transport)
        assert isinstance(ex, BatchExecutor)
        ex.start(self.listener)
        self.executors.append(ex)
        return ex

    def cleanup(self) -> None:
        """Cancel whatever jobs a failed test left on the cluster; shut executors down."""
        if self.executors and self.listener.native:
            refs = [
                AttemptRef(aid, native, self.root, None)
                for aid, native in self.listener.native.items()
            ]
            self.executors[-1].cancel_native(refs)
        for ex in self.executors:
            ex.shutdown()

    def py(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        module = sys.modules.get(fn.__module__)
        source = getattr(module, "__file__", None) or ""
        if module is not None and Path(source).resolve().is_relative_to(TESTS):
            cloudpickle.register_pickle_by_value(module)  # test modules are not importable there
        return pickle.dumps(
            PythonPayload(fn.__name__, cloudpickle.dumps(fn), cloudpickle.dumps((args, kwargs)))
        )

    def sh(self, command: str, outputs: list[str] | None = None) -> bytes:
        return pickle.dumps(ShellPayload(command, outputs or []))

    def spec(
        self, payload: bytes, *, group: str = "g", name: str | None = None,
        kind: TaskKind = TaskKind.PYTHON, resources: Resources | None = None,
    ) -> TaskSpec:
        self.counter += 1
        i = self.counter
        return TaskSpec(
            attempt_id=f"t1.{i}.1", run_id="t1", task_key=f"{i:08x}", name=name or f"{group}[{i}]",
            group=group, kind=kind, payload=payload, resources=resources or Resources(),
            attempt=1, workdir=self.root / "work" / f"task{i}" / "1", cwd=self.root,
        )

    def wait(self, ex: BatchExecutor, count: int, timeout: float = 90) -> dict[str, Completion]:
        done: dict[str, Completion] = {}
        deadline = time.monotonic() + timeout
        while len(done) < count:
            assert time.monotonic() < deadline, f"only {len(done)}/{count} completions: {done}"
            for c in ex.poll(1.0):
                assert c.attempt_id not in done, f"{c.attempt_id} reported twice"
                done[c.attempt_id] = c
        return done

    def wait_started(self, attempt_id: str, ex: BatchExecutor, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while attempt_id not in self.listener.starts:
            assert time.monotonic() < deadline, f"{attempt_id} did not start"
            assert ex.poll(0.2) == []


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Put a fake scheduler's commands first on PATH, with a private state directory."""

    def use(kind: str) -> None:
        monkeypatch.setenv("PATH", f"{FAKES / kind}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_SCHED_DIR", str(tmp_path / "fakesched"))

    return use


@pytest.fixture
def harness_for(
    tmp_path: Path, fake_env: Callable[[str], None]
) -> Iterator[Callable[[str], Harness]]:
    """``harness_for(kind)``: real clusters for slurm/sge (skip if absent), fakes for pbs/lsf."""
    made: list[Harness] = []

    def make(kind: str) -> Harness:
        if kind in REAL:
            require_cluster(kind)
        else:
            fake_env(kind)
        root = tmp_path / "run"
        root.mkdir(exist_ok=True)
        os.chmod(tmp_path, 0o755)
        made.append(Harness(kind, root))
        return made[-1]

    yield make
    for harness in made:
        harness.cleanup()
