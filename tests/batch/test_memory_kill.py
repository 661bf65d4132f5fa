"""A job killed for memory by a scheduler without cgroups ends FAILED (exit 137) on the
scheduler's side; the scheduler's own error file says why, and the attempt is OUT_OF_MEMORY
(so its retry policy can grow the memory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from corral.executors.base import Outcome
from corral.executors.batch.staging import SCHED_ERR
from corral.executors.batch.status import killed_for_memory
from corral.resources import Resources

SLURMSTEPD = "slurmstepd: error: Detected 1 oom-kill event(s) in StepId=7.batch."


def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize(("text", "expected"), [
    (SLURMSTEPD, True),
    ("slurmstepd: error: Exceeded job memory limit", True),
    ("=>> PBS: job killed: mem 2097152kb exceeded resource mem 1048576kb", True),
    ("TERM_MEMLIMIT: job killed after reaching LSF memory usage limit.", True),
    ("Traceback (most recent call last):\nMemoryError", False),
    ("", False),
    (None, False),
])
def test_memory_kill_messages(text: str | None, expected: bool) -> None:
    assert killed_for_memory(text) is expected


@pytest.mark.parametrize("kind", [
    pytest.param("slurm", marks=pytest.mark.slurm),
    "pbs",  # the fake scheduler of tests/fakes
])
def test_failed_job_with_a_memory_kill_message_is_out_of_memory(
    kind: str, harness_for: Callable[[str], Any]
) -> None:
    h = harness_for(kind)
    # what slurmstepd does without cgroups: a message in the job's own error file (not the
    # task's stderr.log, where the job script sends its output), then SIGKILL
    ex = h.executor(setup=[f"echo '{SLURMSTEPD}' >> \"$CORRAL_ATTEMPT_DIR/{SCHED_ERR}\"",
                           "exit 137"])
    spec = h.spec(h.py(square, 3), group="sq", resources=Resources(memory="100M"))
    ex.submit([spec])
    c = h.wait(ex, 1, timeout=60)[spec.attempt_id]
    assert c.outcome is Outcome.OUT_OF_MEMORY, c.error
    assert c.error and "memory=100M" in c.error
    # the same message in the task's own stderr is not the scheduler's word
    plain = h.executor(setup=[f"echo '{SLURMSTEPD}' >&2", "exit 137"])
    spec = h.spec(h.py(square, 3), group="sq")
    plain.submit([spec])
    assert h.wait(plain, 1, timeout=60)[spec.attempt_id].outcome is Outcome.FAILED
    ex.shutdown()
    plain.shutdown()
