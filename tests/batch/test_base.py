"""BatchExecutor behaviour that needs no real cluster: limit refusals, submission failures,
local cancellation, transport errors (run against the fake PBS scheduler)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from corral.errors import CommandError, ExecutorError
from corral.executors.base import Outcome
from corral.executors.batch.pbs import PBSExecutor
from corral.executors.batch.settings import parse_settings
from corral.transport.base import CommandResult
from corral.transport.local import LocalTransport


class RefusingTransport(LocalTransport):
    """Refuses the first ``refusals`` submissions with ``message``."""

    def __init__(self, refusals: int, message: str) -> None:
        super().__init__()
        self.refusals = refusals
        self.message = message
        self.submits = 0

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        if argv[0] == "qsub":
            self.submits += 1
            if self.refusals > 0:
                self.refusals -= 1
                raise CommandError(list(argv), 38, "", self.message)
        return super().run(argv, **kwargs)


def square(x: int) -> int:
    return x * x


def nap(seconds: float) -> None:
    time.sleep(seconds)


def pbs_with(h: Any, transport: LocalTransport, **options: Any) -> PBSExecutor:
    ex = h.executor(transport, **options)
    assert isinstance(ex, PBSExecutor)
    return ex


def test_limit_refusal_keeps_specs_queued(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("pbs")
    transport = RefusingTransport(1, "qsub: would exceed queue generic's per-user limit")
    ex = pbs_with(h, transport, limit_backoff=0.5)
    specs = [h.spec(h.py(square, i), group="sq") for i in range(3)]
    ex.submit(specs)
    assert h.listener.native == {} and ex.capacity() == 0
    done = h.wait(ex, 3)
    assert all(c.outcome is Outcome.SUCCEEDED for c in done.values())
    assert transport.submits == 2  # refused once, then one array job


def test_other_submission_errors_fail_the_attempts(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("pbs")
    transport = RefusingTransport(5, "qsub: Unknown queue")
    ex = pbs_with(h, transport)
    spec = h.spec(h.py(square, 1), group="sq")
    ex.submit([spec])
    c = h.wait(ex, 1)[spec.attempt_id]
    assert c.outcome is Outcome.FAILED and c.error and "Unknown queue" in c.error


def test_cancel_of_locally_queued_specs(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("pbs")
    transport = RefusingTransport(100, "qsub: would exceed queue generic's per-user limit")
    ex = pbs_with(h, transport, limit_backoff=60)
    specs = [h.spec(h.py(square, i), group="sq") for i in range(2)]
    ex.submit(specs)
    ex.cancel([specs[0].attempt_id])
    done = h.wait(ex, 1, timeout=5)
    assert done[specs[0].attempt_id].outcome is Outcome.CANCELLED
    assert ex.poll(0.2) == []  # the other one is still queued locally


def test_submit_before_start_is_an_error(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("pbs")
    settings = parse_settings(PBSExecutor.settings_class, {}, "pbs")
    ex = PBSExecutor(settings, h.ctx)
    with pytest.raises(ExecutorError, match="start"):
        ex.submit([h.spec(h.py(square, 1))])


def test_status_backoff_grows_while_nothing_changes(harness_for: Callable[[str], Any]) -> None:
    h = harness_for("pbs")
    ex = h.executor(poll_interval=0.1, max_poll_interval=0.4)
    spec = h.spec(h.py(nap, 3), group="sleep")
    ex.submit([spec])
    ex.poll(2.5)
    assert ex.query_calls <= 12  # 0.1, 0.15, 0.225, 0.34, 0.4 ... not one per marker scan
    h.wait(ex, 1)


def test_local_transport_errors() -> None:
    t = LocalTransport()
    with pytest.raises(CommandError) as info:
        t.run(["false"])
    assert info.value.returncode == 1
    with pytest.raises(CommandError, match="127"):
        t.run(["/nonexistent/tool"])
    with pytest.raises(CommandError):
        t.run(["sleep", "5"], timeout=0.2)
    assert t.run(["cat"], input="hi").stdout == "hi"
    assert t.run(["false"], check=False).returncode == 1


def test_local_transport_atomic_write(tmp_path: Any) -> None:
    t = LocalTransport()
    target = tmp_path / "a" / "b" / "f.txt"
    t.write_bytes(str(target), b"data", mode=0o600)
    assert t.read_bytes(str(target)) == b"data" and t.exists(str(target))
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert t.read_bytes(str(tmp_path / "missing")) is None
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
