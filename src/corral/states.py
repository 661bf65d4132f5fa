"""States of runs, tasks and attempts, and the one table of how runs and tasks may change.

Every change of a task's or a run's state, by the attached engine, by detached mode's
reconcile or by the store's bulk updates, is one of the transitions below; anything else is a
bug and raises :class:`~corral.errors.StateError` (``check_task``, ``check_run``).
``tests/core/test_states.py`` walks every transition of the tables.
"""

from __future__ import annotations

import enum


class RunState(enum.StrEnum):
    PENDING = "pending"
    """Created, no engine has started it yet."""
    RUNNING = "running"
    """An engine is releasing tasks."""
    PAUSED = "paused"
    """No new task is released; running ones finish. ``corral resume`` continues."""
    SUCCEEDED = "succeeded"
    """Every task succeeded or was reused from the cache."""
    FAILED = "failed"
    """At least one task failed after its retries; the rest finished or were skipped."""
    CANCELLED = "cancelled"
    """Cancelled by the user."""
    DETACHED = "detached"
    """Submitted to a batch scheduler with scheduler-side dependencies; no engine watches it.
    ``corral status`` reconciles its results from the exit markers."""
    EXPORTED = "exported"
    """Written as a standalone script (``corral export --format``); reconciled like DETACHED."""
    INTERRUPTED = "interrupted"
    """The engine stopped (signal) before the run ended; running the command again resumes."""


TERMINAL_RUN_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})


class TaskState(enum.StrEnum):
    PENDING = "pending"
    """Waiting for its inputs or for a free slot."""
    QUEUED = "queued"
    """An attempt was handed to the executor and waits to start (in a scheduler's queue: PENDING
    in squeue, ``qw`` in Grid Engine; or for a free slot)."""
    RUNNING = "running"
    """An attempt has started on a node and has not ended."""
    SUCCEEDED = "succeeded"
    """Ran in this run and stored its result."""
    CACHED = "cached"
    """Its key had a stored result: reused, not run."""
    FAILED = "failed"
    """Its last attempt failed and no retry is left."""
    SKIPPED = "skipped"
    """Not run because an upstream task failed."""
    CANCELLED = "cancelled"
    """Cancelled before it could finish."""


DONE_TASK_STATES = frozenset({TaskState.SUCCEEDED, TaskState.CACHED})


class AttemptState(enum.StrEnum):
    """Where one attempt of a task is. An attempt that ended has one of the executor's
    outcomes (``corral.executors.base.Outcome``: the same values, from ``succeeded`` to
    ``lost``) or one of the two states below that mean it never really ran."""

    SUBMITTED = "submitted"
    """Handed to the executor (in a scheduler's queue, or waiting for a local slot)."""
    RUNNING = "running"
    """Started on a node."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"
    NODE_FAILURE = "node_failure"
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"
    LOST = "lost"
    WITHDRAWN = "withdrawn"
    """Taken back from the executor's queue by a pause before it started."""
    ABANDONED = "abandoned"
    """Left by an engine that stopped; a resumed run submits the task again."""


LIVE_ATTEMPT_STATES = frozenset({AttemptState.SUBMITTED, AttemptState.RUNNING})
"""Attempts that may still be in a scheduler's queue or running: what a cancel must reach."""
UNCOUNTED_ATTEMPT_STATES = frozenset({AttemptState.WITHDRAWN, AttemptState.ABANDONED})
"""Attempts that never really ran: they count neither as retries nor as failures."""


# ---------------------------------------------------------------------- transitions

_TERMINAL_TASK = (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.FAILED, TaskState.SKIPPED,
                  TaskState.CANCELLED)

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    # released, reused, refused before submission (FAILED), skipped or cancelled while waiting;
    # RUNNING directly: a detached submission or an attempt re-attached after an engine restart;
    # SUCCEEDED directly: a gather or a scatter's expander, run inside the engine
    TaskState.PENDING: frozenset({TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCEEDED,
                                  TaskState.CACHED, TaskState.FAILED, TaskState.SKIPPED,
                                  TaskState.CANCELLED}),
    # started; ended; a retry waits (PENDING) or is handed over again (QUEUED); withdrawn by a
    # pause (PENDING); a held detached job whose upstream failed (SKIPPED)
    TaskState.QUEUED: frozenset({TaskState.QUEUED, TaskState.RUNNING, TaskState.PENDING,
                                 TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
                                 TaskState.SKIPPED}),
    TaskState.RUNNING: frozenset({TaskState.RUNNING, TaskState.QUEUED, TaskState.PENDING,
                                  TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED,
                                  TaskState.SKIPPED}),
    # an ended task only changes when its run is resumed: it waits again (or stays reused)
    **{s: frozenset({TaskState.PENDING}) for s in _TERMINAL_TASK},
}
"""For each task state, the states it may change to."""

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING, RunState.PAUSED, RunState.DETACHED,
                                 RunState.EXPORTED, RunState.SUCCEEDED, RunState.FAILED,
                                 RunState.CANCELLED, RunState.INTERRUPTED}),
    RunState.RUNNING: frozenset({RunState.PAUSED, RunState.SUCCEEDED, RunState.FAILED,
                                 RunState.CANCELLED, RunState.INTERRUPTED}),
    RunState.PAUSED: frozenset({RunState.RUNNING, RunState.SUCCEEDED, RunState.FAILED,
                                RunState.CANCELLED, RunState.INTERRUPTED}),
    # a run that did not succeed is resumed by the same command (RUNNING), paused or
    # cancelled while no engine runs it
    RunState.INTERRUPTED: frozenset({RunState.RUNNING, RunState.PAUSED, RunState.CANCELLED,
                                     RunState.FAILED}),
    RunState.FAILED: frozenset({RunState.RUNNING}),
    RunState.CANCELLED: frozenset({RunState.RUNNING}),
    RunState.DETACHED: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}),
    RunState.EXPORTED: frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}),
    RunState.SUCCEEDED: frozenset(),
}
"""For each run state, the states it may change to (a succeeded run never changes: running
the pipeline again makes a new run, or reuses the old one's results)."""


def may_become(new: TaskState) -> frozenset[TaskState]:
    """The task states from which ``new`` is a transition of the table (for the store's bulk
    changes, which select their rows by these)."""
    return frozenset(old for old, targets in TASK_TRANSITIONS.items() if new in targets)


ENDED_TASK_STATES = frozenset(_TERMINAL_TASK)
"""Tasks that ended, one way or another (their values too: these are string enums)."""
UNFINISHED_TASK_STATES = frozenset(may_become(TaskState.CANCELLED)) - ENDED_TASK_STATES
"""Tasks a cancel without an engine marks cancelled: those that may be, and have not ended."""


def check_task(old: TaskState | str, new: TaskState, name: str = "") -> TaskState:
    """``new`` if a task may go from ``old`` to it; :class:`StateError` otherwise."""
    allowed = TASK_TRANSITIONS.get(old) if type(old) is TaskState else None  # (the engine's)
    if allowed is None:
        allowed = TASK_TRANSITIONS[TaskState(old)]
    if new not in allowed:
        from corral.errors import StateError

        raise StateError(f"task {name or '?'}: no transition from {old} to {new.value}")
    return new


def check_run(old: RunState | str, new: RunState, run_id: str = "") -> RunState:
    """``new`` if a run may go from ``old`` to it (or stays); :class:`StateError` otherwise."""
    if new != old and new not in RUN_TRANSITIONS[RunState(old)]:
        from corral.errors import StateError

        raise StateError(f"run {run_id or '?'}: no transition from {old} to {new.value}")
    return new
