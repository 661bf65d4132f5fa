"""States of runs and tasks as stored in the database."""

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
