"""The batch executor of a detached run, created on first use (reconcile mostly needs none)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from corral.errors import CorralError, UsageError
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.status import JobStatus

from ..prepare import recorded_executor

if TYPE_CHECKING:
    pass

from .state import DetachedRun

log = logging.getLogger("corral.engine.detached")


class Scheduler:
    """The run's batch executor, created on first use (reconcile mostly needs none)."""

    def __init__(self, run: dict[str, Any], state: DetachedRun) -> None:
        self.run, self.state = run, state
        self._ex: BatchExecutor | None = None

    def executor(self) -> BatchExecutor:
        if self._ex is None:
            ex = recorded_executor({**self.run, "executor": {**(self.run.get("executor") or {}),
                                                             "jobs": 1}}, self.state.kind)
            if not isinstance(ex, BatchExecutor):
                raise UsageError(f"executor {self.state.kind!r} of a detached run is not a "
                                 "batch scheduler")
            self._ex = ex
        return self._ex

    def query(self, native_ids: list[str]) -> dict[str, JobStatus] | None:
        """One status query; ``None`` when the scheduler cannot be asked."""
        try:
            return self.executor().query(native_ids)
        except CorralError as exc:
            log.info("detached run %s: status query failed: %s", self.run["id"], exc)
            return None

    def delete(self, native_ids: list[str]) -> None:
        """One cancel command (in this order); jobs already gone are only logged."""
        if not native_ids:
            return
        try:
            self.executor().cancel_jobs(native_ids)
        except CorralError as exc:
            log.warning("detached run %s: could not delete jobs %s: %s", self.run["id"],
                        " ".join(native_ids), exc)

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown()
