"""The executor seam: the narrow interface between the engine and whatever runs tasks.

The engine hands an executor *batches* of :class:`TaskSpec` and asks it, from one thread, for the
:class:`Completion` of attempts that have ended. Executors never touch the state store or the
graph; they only run attempts. A new backend is one module implementing :class:`Executor`
and an entry point (docs/executors/writing.md); tests/executors/test_contract.py checks it.

Contract
--------
- ``from_options(options, ctx)`` builds it (see :func:`corral.executors.create_executor`); it is
  registered under its ``kind`` in the ``corral.executors`` entry-point group.
- ``start(listener)`` once before anything else; ``listener`` lets the executor report native ids
  (``listener.submitted(attempt_id, native_id)``) and start times (``listener.started``) so the
  engine persists them for re-attach and metrics.
- ``submit(batch)`` must not block for long; specs of one batch that share ``group`` and
  resources may be sent as one array job.
- ``poll(timeout)`` returns the completions known now, waiting at most ``timeout`` seconds
  for the first one. It reports every submitted attempt exactly once.
- ``cancel(attempt_ids)`` asks for the attempts to stop; they are still reported by ``poll``
  (as ``CANCELLED`` unless they finished first).
- ``reattach(refs)`` takes attempts persisted by a previous engine (with their native ids) and
  returns the ids it has taken over (they will be reported by ``poll``); the rest are resubmitted.
- ``capacity()`` is how many more attempts the executor accepts now (``None``: no limit).
- ``shutdown()`` releases resources; it does not cancel running cluster jobs.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from corral.resources import Resources


class TaskKind(enum.StrEnum):
    """What an attempt runs."""

    PYTHON = "python"
    """A cloudpickled Python callable with its arguments."""
    SHELL = "shell"
    """A shell command line run by ``bash -c`` (substituted values are quoted)."""


class Outcome(enum.StrEnum):
    """How an attempt ended. Every member is terminal."""

    SUCCEEDED = "succeeded"
    """The task returned (Python) or exited 0 (shell) and its result was written."""
    FAILED = "failed"
    """The task raised or exited non-zero."""
    OUT_OF_MEMORY = "out_of_memory"
    """Killed for exceeding its memory request (scheduler OOM or MemoryError)."""
    TIMEOUT = "timeout"
    """Killed for exceeding its walltime."""
    NODE_FAILURE = "node_failure"
    """The node running it failed."""
    PREEMPTED = "preempted"
    """Preempted by the scheduler."""
    CANCELLED = "cancelled"
    """Cancelled by Corral or by someone outside Corral (scancel, qdel)."""
    LOST = "lost"
    """The job vanished from the scheduler without leaving an exit marker."""

    @property
    def retryable(self) -> bool:
        """Whether the task's retry policy applies (cancellation is never retried)."""
        return self not in (Outcome.SUCCEEDED, Outcome.CANCELLED)


@dataclass
class Metrics:
    """Measured facts of one attempt. Times are UNIX seconds; sizes are bytes."""

    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    peak_rss: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    exit_code: int | None = None
    host: str | None = None
    native_id: str | None = None

    @property
    def wall(self) -> float | None:
        """Wall time of the attempt in seconds."""
        if self.started is None or self.ended is None:
            return None
        return max(0.0, self.ended - self.started)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class TaskSpec:
    """One attempt of one task, as sent to an executor."""

    attempt_id: str
    """Unique id of the attempt (``<run>.<task index>.<attempt>``); safe in file names."""
    run_id: str
    task_key: str
    """Cache key of the task (hex)."""
    name: str
    """Display name, e.g. ``littlewood.roots[3]``."""
    group: str
    """Name of the task definition; specs sharing group and resources may form one array job."""
    kind: TaskKind
    payload: bytes
    """Pickled :class:`corral.worker.execute.Payload`."""
    resources: Resources
    attempt: int
    """1-based attempt number."""
    workdir: Path
    """Directory of this attempt (logs, markers, result) under the run's work directory."""
    cwd: Path
    """Directory the task runs in (the pipeline's working directory)."""
    env: dict[str, str] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    """Files the task reads, as written in the pipeline (relative to ``cwd``, or absolute), for
    executors that stage files (see :func:`corral.engine.specs.input_files`)."""


@dataclass
class Completion:
    """The end of one attempt, as reported by an executor."""

    attempt_id: str
    outcome: Outcome
    metrics: Metrics = field(default_factory=Metrics)
    result: bytes | None = None
    """Pickled return value (Python) or ``None``."""
    error: str | None = None
    """Traceback or reason, for the user."""
    stdout: str | None = None
    """Captured standard output, when the executor captured it in memory."""
    stderr: str | None = None


@dataclass(frozen=True)
class AttemptRef:
    """A persisted attempt a new engine may re-attach to."""

    attempt_id: str
    native_id: str
    workdir: Path
    submitted: float | None


class Listener(Protocol):
    """What an executor tells the engine while attempts are in flight."""

    def submitted(self, attempt_id: str, native_id: str) -> None: ...

    def started(self, attempt_id: str, when: float, host: str | None) -> None: ...


class Executor(ABC):
    """Base class of every executor. See the module docstring for the contract."""

    kind: ClassVar[str]
    """Registry name, e.g. ``"local"``, ``"slurm"``."""

    #: Whether attempts run in a separate file system view and need the work dir shared.
    needs_shared_workdir: ClassVar[bool] = False

    #: Whether attempts may run where the pipeline's files are not (the engine then lists each
    #: attempt's input files in ``TaskSpec.inputs`` for the executor to copy).
    stages_inputs: ClassVar[bool] = True

    #: Whether the executor itself keeps at most ``ctx.max_parallel`` attempts running (and so
    #: may be handed more, to queue); otherwise the engine keeps at most that many in flight.
    applies_parallel_limit: ClassVar[bool] = False

    #: Whether the attempts' workers see this machine's files at the same paths (the store's
    #: blobs): large upstream values then reach them by reference, not through the engine.
    reads_engine_files: bool = False
    #: Whether the executor sends the engine's value files named in a payload to its workers
    #: (staged ssh): large upstream values then go by reference too, not through the engine.
    stages_engine_files: bool = False

    @classmethod
    @abstractmethod
    def from_options(cls, options: dict[str, Any], ctx: ExecutorContext) -> Executor:
        """Build the executor from its profile options (``corral.toml``'s ``[executors.NAME]``
        table without ``kind``, or ``executor_options=``) for the run ``ctx`` describes. An
        unknown option or a bad value raises :class:`corral.errors.ConfigError` with a one-line
        message; nothing slow happens here (connections and cluster checks belong in ``start``)."""

    @classmethod
    def warm_up(cls, options: Mapping[str, Any], preload: Sequence[str] = ()) -> None:
        """Optionally begin slow set-up before the run exists (the engine calls this first, then
        plans the run while it proceeds); must not fail: bad options are reported later.
        ``preload``: see :attr:`ExecutorContext.preload`."""
        return None

    @abstractmethod
    def start(self, listener: Listener) -> None: ...

    @abstractmethod
    def submit(self, batch: Sequence[TaskSpec]) -> None: ...

    @abstractmethod
    def poll(self, timeout: float) -> list[Completion]: ...

    @abstractmethod
    def cancel(self, attempt_ids: Sequence[str]) -> None: ...

    def reattach(self, refs: Sequence[AttemptRef]) -> list[str]:
        """Take over attempts of a previous engine; by default none can be (local processes)."""
        return []

    def cancel_native(self, refs: Sequence[AttemptRef]) -> None:
        """Cancel attempts of a run whose engine is gone (``corral cancel``); default: nothing."""
        return None

    def capacity(self) -> int | None:
        """How many more attempts may be submitted now; ``None`` means no limit."""
        return None

    def validate(self, resources: Resources) -> None:
        """Raise :class:`corral.errors.ResourceError` if ``resources`` cannot be honoured."""
        return None

    @abstractmethod
    def shutdown(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description for the run record."""
        return {"kind": self.kind}


@dataclass
class ExecutorContext:
    """What every executor is told about the run it serves."""

    run_id: str
    work_root: Path
    """Directory of this run's attempt directories (``.corral/work/<run>``)."""
    cwd: Path
    """The pipeline's working directory; tasks run there."""
    max_parallel: int
    """The ``-j`` limit: attempts running (or queued on a cluster) at once."""
    python: str = ""
    """Python interpreter for workers (default: the engine's own ``sys.executable``)."""
    preload: tuple[str, ...] = ()
    """Installed packages the pipeline file imported (numpy ...): workers may import them
    before the first task arrives."""
