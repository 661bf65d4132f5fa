"""The executor contract, run against every executor: every attempt is reported exactly once,
with a final state, and nothing else is reported.

Each case drives one executor directly, as the engine does: TaskSpecs built by hand, submitted
in several batches (never more in flight than ``ctx.max_parallel`` or ``capacity()``), some
cancelled while running or before they start, finished ones cancelled late; ``poll`` until each
attempt is reported, then a while longer to see that nothing more comes. A third-party executor
passes this suite too (docs/executors/writing.md): add its kind and options in conftest.py.
"""

from __future__ import annotations

import pickle
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from corral.executors.base import Completion, Executor, Outcome, TaskKind, TaskSpec
from corral.resources import Resources
from corral.worker.execute import PythonPayload, ShellPayload

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import the tests

KINDS = [
    "local",
    pytest.param("ssh", marks=pytest.mark.ssh),
    "dask",
    pytest.param("slurm", marks=pytest.mark.slurm),
    pytest.param("sge", marks=pytest.mark.sge),
    "pbs",
    "lsf",
]
MAX_PARALLEL = 16
"""``ctx.max_parallel`` of the executors (conftest.py): at most this many attempts in flight."""
LONG = 60.0
"""How long a task meant to be cancelled would sleep: far longer than the test."""


def square(x: int) -> int:
    return x * x


def boom(message: str) -> None:
    raise ValueError(message)


def sleeper(flag: str) -> str:
    Path(flag).write_text("running")
    time.sleep(LONG)
    return "woke"


class Driver:
    """Submits specs to one executor and collects what ``poll`` reports, checking the contract
    on every completion; it is the executor's listener too."""

    def __init__(self, executor: Executor, root: Path) -> None:
        self.ex = executor
        self.root = root
        self.specs: dict[str, TaskSpec] = {}
        """Every attempt submitted."""
        self.done: dict[str, Completion] = {}
        self.natives: dict[str, str] = {}
        self.count = 0
        executor.start(self)

    def submitted(self, attempt_id: str, native_id: str) -> None:
        assert attempt_id in self.specs, f"native id for {attempt_id}, never submitted"
        self.natives[attempt_id] = native_id

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        assert attempt_id in self.specs, f"{attempt_id} started, never submitted"

    def spec(self, payload: bytes, kind: TaskKind = TaskKind.PYTHON, group: str = "g") -> TaskSpec:
        self.count += 1
        n = self.count
        workdir = self.root / "work" / "c1" / f"c1.{n}.1"
        workdir.mkdir(parents=True, exist_ok=True)
        return TaskSpec(attempt_id=f"c1.{n}.1", run_id="c1", task_key=f"{n:064x}", name=f"{group}[{n}]",
                        group=group, kind=kind, payload=payload, resources=Resources(), attempt=1,
                        workdir=workdir, cwd=self.root / "project")

    def py(self, fn: Callable[..., Any], *args: Any, group: str | None = None) -> TaskSpec:
        payload = PythonPayload(fn.__name__, cloudpickle.dumps(fn), cloudpickle.dumps((args, {})))
        return self.spec(pickle.dumps(payload), group=group or fn.__name__)

    def sh(self, command: str) -> TaskSpec:
        return self.spec(pickle.dumps(ShellPayload(command, [])), TaskKind.SHELL, "sh")

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        in_flight = len(self.specs) - len(self.done)
        capacity = self.ex.capacity()
        assert in_flight + len(batch) <= MAX_PARALLEL, "the test keeps within max_parallel"
        assert capacity is None or len(batch) <= capacity, f"capacity {capacity} < {len(batch)}"
        self.specs.update((s.attempt_id, s) for s in batch)
        self.ex.submit(batch)

    def poll(self, timeout: float) -> None:
        for c in self.ex.poll(timeout):
            assert c.attempt_id in self.specs, f"reported {c.attempt_id}, never submitted"
            assert c.attempt_id not in self.done, f"{c.attempt_id} reported twice: {c}"
            assert isinstance(c.outcome, Outcome), c
            self.done[c.attempt_id] = c

    def wait(self, ids: Sequence[str] | None = None, timeout: float = 60.0) -> None:
        wanted = set(self.specs if ids is None else ids)
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.done):
            assert time.monotonic() < deadline, f"never reported: {sorted(wanted - set(self.done))}"
            self.poll(0.5)

    def wait_file(self, path: Path, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"{path} never appeared"
            self.poll(0.1)

    def close(self) -> None:
        """After a failed check: cancel what still runs (no job is left on a cluster)."""
        left = [aid for aid in self.specs if aid not in self.done]
        if left:
            self.ex.cancel(left)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(aid not in self.done for aid in left):
                for c in self.ex.poll(0.5):
                    self.done.setdefault(c.attempt_id, c)


@pytest.mark.parametrize("kind", KINDS)
def test_every_attempt_is_reported_exactly_once(
    kind: str, make_executor: Callable[[str], Executor], tmp_path: Path
) -> None:
    d = Driver(make_executor(kind), tmp_path)
    try:
        _scenario(d, tmp_path)
    finally:
        d.close()


def _scenario(d: Driver, root: Path) -> None:
    """The batches, the cancels and the final checks of the contract test."""
    ok = [d.py(square, i) for i in range(3)]
    bad, shell_ok, shell_bad = d.py(boom, "no luck"), d.sh("echo fine"), d.sh("echo nope >&2; exit 3")
    first = [*ok, bad, shell_ok, shell_bad]
    d.submit(first)
    d.poll(0.2)
    flag = root / "running.flag"
    running, queued = d.py(sleeper, str(flag)), d.py(sleeper, str(root / "never.flag"))
    quick = d.py(square, 7)
    d.submit([running])
    d.wait_file(flag)  # running: cancelled while it runs
    d.submit([queued, quick])
    d.ex.cancel([queued.attempt_id])  # cancelled at once, running or not yet
    d.ex.cancel([running.attempt_id])
    last = [d.py(square, 10), d.sh("true")]
    d.submit(last)
    d.wait(timeout=180)  # a shared cluster may be busy
    d.ex.cancel([s.attempt_id for s in (*ok, bad, quick, running)])  # late cancels: no report
    d.poll(1.0)
    d.poll(0.5)
    assert set(d.done) == set(d.specs)
    outcomes = {aid: c.outcome for aid, c in d.done.items()}
    expected = {s.attempt_id: Outcome.SUCCEEDED for s in (*ok, shell_ok, quick, *last)}
    expected |= {bad.attempt_id: Outcome.FAILED, shell_bad.attempt_id: Outcome.FAILED,
                 running.attempt_id: Outcome.CANCELLED, queued.attempt_id: Outcome.CANCELLED}
    assert outcomes == expected, {aid: d.done[aid].error for aid in outcomes if outcomes[aid] != expected[aid]}
    assert [pickle.loads(d.done[s.attempt_id].result or b"") for s in ok] == [0, 1, 4]
    assert "ValueError: no luck" in (d.done[bad.attempt_id].error or "")
    assert d.done[shell_bad.attempt_id].metrics.exit_code == 3
