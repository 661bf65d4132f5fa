"""Scheduler-neutral job states, as the scheduler modules parse them from their tools' output."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from corral.executors.base import Outcome


class JobState(enum.StrEnum):
    """State of one job (or array element) as the scheduler reports it."""

    PENDING = "pending"
    """Queued, held or waiting for a dependency."""
    RUNNING = "running"
    """Running, suspended or finishing."""
    COMPLETED = "completed"
    """Ended with exit code 0."""
    FAILED = "failed"
    """Ended with a non-zero exit code."""
    OUT_OF_MEMORY = "out_of_memory"
    """Killed for exceeding its memory limit."""
    TIMEOUT = "timeout"
    """Killed for exceeding its time limit."""
    NODE_FAILURE = "node_failure"
    """Its node failed (or failed to boot)."""
    PREEMPTED = "preempted"
    """Preempted by the scheduler."""
    CANCELLED = "cancelled"
    """Cancelled (scancel, qdel, bkill)."""
    ERROR_HELD = "error_held"
    """Stuck in an error state that never resolves (Grid Engine ``Eqw``); must be deleted."""

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.OUT_OF_MEMORY,
        JobState.TIMEOUT,
        JobState.NODE_FAILURE,
        JobState.PREEMPTED,
        JobState.CANCELLED,
    }
)

OUTCOME_OF_STATE: dict[JobState, Outcome] = {
    JobState.COMPLETED: Outcome.LOST,  # finished without an exit marker
    JobState.FAILED: Outcome.FAILED,
    JobState.OUT_OF_MEMORY: Outcome.OUT_OF_MEMORY,
    JobState.TIMEOUT: Outcome.TIMEOUT,
    JobState.NODE_FAILURE: Outcome.NODE_FAILURE,
    JobState.PREEMPTED: Outcome.PREEMPTED,
    JobState.CANCELLED: Outcome.CANCELLED,
    JobState.ERROR_HELD: Outcome.FAILED,
}


@dataclass
class JobStatus:
    """What one status or accounting query says about one job or array element."""

    state: JobState
    exit_code: int | None = None
    reason: str | None = None
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    max_rss: int | None = None
    host: str | None = None


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)i?B?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_size(text: str | None, default_unit: str = "") -> int | None:
    """``"1234K"``, ``"4.750MB"``, ``"12345kb"`` -> bytes; ``None`` if absent or unparsable."""
    if not text:
        return None
    m = _SIZE_RE.match(text)
    if not m:
        return None
    unit = (m.group(2) or default_unit).upper()
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def expand_range(spec: str) -> list[int]:
    """``"1-10:2,15"`` or ``"3-5%2"`` -> indices (step after ``:``, throttle after ``%``)."""
    out: list[int] = []
    for part in spec.split("%")[0].split(","):
        part = part.strip()
        if not part:
            continue
        rng, _, step_text = part.partition(":")
        first, _, last = rng.partition("-")
        try:
            lo = int(first)
            hi = int(last) if last else lo
            step = int(step_text) if step_text else 1
        except ValueError:
            continue
        out.extend(range(lo, hi + 1, max(step, 1)))
    return out


MEMORY_KILL = re.compile(
    r"exceeded (job|step) memory limit|oom[-_ ]kill|exceeded resource mem|term_memlimit",
    re.IGNORECASE,
)
"""What schedulers write to a job's own error file when they kill it for memory: slurmstepd
("Exceeded job memory limit", "oom-kill event(s)"), PBS ("exceeded resource mem"), LSF
(TERM_MEMLIMIT). Without cgroups a SLURM job killed this way ends FAILED, not OUT_OF_MEMORY."""


def killed_for_memory(scheduler_log: str | None) -> bool:
    """Whether the scheduler's error file of a job says it was killed for memory (the task's
    own output is in another file, so a program cannot trigger this by printing)."""
    return scheduler_log is not None and MEMORY_KILL.search(scheduler_log) is not None
