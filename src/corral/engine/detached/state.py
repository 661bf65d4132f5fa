"""What a detached run keeps between submission and reconciles: the tasks and their jobs
(``detach.pkl`` in the run's work root), the per-task result links that retries repoint, and
the run's claim while one reconcile works on it."""

from __future__ import annotations

import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle

from corral.errors import RunLockedError
from corral.resources import Resources
from corral.states import TaskState
from corral.store import Store

from ..prepare import work_root
from ..values import GatherRef

if TYPE_CHECKING:
    pass


log = logging.getLogger("corral.engine.detached")

STATE_FILE = "detach.pkl"
FINISHED_TASK = frozenset({TaskState.SUCCEEDED.value, TaskState.CACHED.value,
                           TaskState.FAILED.value, TaskState.SKIPPED.value,
                           TaskState.CANCELLED.value})
BAD_TASK = frozenset({TaskState.FAILED.value, TaskState.SKIPPED.value, TaskState.CANCELLED.value})
"""Task states that skip the dependents and fail the run (a job cancelled outside Corral too)."""
LINK_DIR = "results"
"""Under the run's work root: one symbolic link per retryable Python task to its result."""


@dataclass
class DetachedTask:
    idx: int
    name: str
    key: str
    task_id: int
    kind: str
    deps: list[int]
    attempt_id: str = ""
    workdir: str = ""
    native_id: str | None = None
    shell_value: bytes | None = None
    """Pickled value of a shell task's future (its output paths)."""
    outputs: list[str] = field(default_factory=list)
    """Absolute declared output paths of a shell task."""
    # what a retry needs (class-level defaults: states pickled before retries still load)
    spec_kind: str = "python"
    group: str = ""
    inputs: tuple[str, ...] = ()
    number: int = 1
    """Attempt number of ``attempt_id``."""
    uncounted: int = 0
    """Attempts withdrawn before they ran (resubmitted below a retry); they count neither
    toward retries nor toward resources-by-attempt."""
    retries: int = 0
    plan: tuple[Resources | str, ...] = ()
    """Resources of real attempts 1 .. retries + 1 (a string: why they were refused)."""
    link: str = ""
    """Symbolic link to the current attempt's result that consumers' payloads name."""


@dataclass
class DetachedRun:
    run_id: str
    cwd: str
    kind: str
    tasks: dict[int, DetachedTask]


def load_state(store: Store, run_id: str) -> DetachedRun | None:
    run = store.get_run(run_id)
    path = work_root(Path(run["workdir"]), run["id"]) / STATE_FILE
    try:
        state: DetachedRun = pickle.loads(path.read_bytes())
    except OSError:
        return None
    return state


def write_state(path: Path, state: DetachedRun) -> None:
    """Write ``detach.pkl`` so that a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_bytes(pickle.dumps(state))
    os.replace(tmp, path)


# ---------------------------------------------------------------------- the claim


def result_link(work_root: Path, idx: int) -> Path:
    return work_root / LINK_DIR / f"{idx}.pkl"


def point_link(link: Path, target: Path) -> None:
    """Make ``link`` a symbolic link to ``target`` (atomically replacing an older one)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def claim(store: Store, run_id: str) -> bool:
    """Take the run's engine claim for one reconcile; ``False`` if another live process has
    it. The common case is one compare-and-set (free claim), atomic on SQLite and PostgreSQL;
    a claim left by a dead process is taken over by :meth:`Store.claim_run`."""
    if store.claim_free(run_id):
        return True
    try:
        note = store.claim_run(run_id)
    except RunLockedError:
        return False
    if note:
        log.info("%s", note)
    return True


def release(store: Store, run_id: str) -> None:
    store.release_own_claim(run_id)


def control_of(store: Store, run_id: str) -> str:
    return store.control_of(run_id)


# ---------------------------------------------------------------------- one reconcile pass


def task_value(store: Store, key: str) -> Any:
    """A stored result by key (gathers resolved), for callers without an engine."""
    value = cloudpickle.loads(store.load_value(key))
    if isinstance(value, GatherRef):
        return [task_value(store, k) for k in value.keys]
    return value
