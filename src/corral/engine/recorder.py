"""Batched writes of one engine iteration: changes collected in memory, written in one
transaction by :meth:`corral.store.Store.write_batch`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.hashing import digest_bytes, file_digest
from corral.states import ENDED_TASK_STATES
from corral.store import Store
from corral.store.writes import NewTasks, provisional_id

ROWS_WAIT = 2.0
"""Seconds at most that the row of a task added while the run goes (see
:meth:`Recorder.tasks_new`) waits for its task to end, to be written once, ended, instead of
written and then updated as the task goes."""


class Recorder:
    """Collects changes and writes them in one transaction on :meth:`flush`."""

    def __init__(self, store: Store,
                 on_task_ids: Callable[[dict[int, int]], None] | None = None) -> None:
        self.store = store
        self.on_task_ids = on_task_ids
        """Told the ids of the rows of :meth:`tasks_new` when they are written, by index."""
        self.new_tasks: dict[int, dict[str, Any]] = {}
        """Task rows not yet written, by provisional id (changes go into them)."""
        self._new_run: tuple[str, int] = ("", 0)
        self._born: dict[int, float] = {}
        self.task_updates: dict[int, dict[str, Any]] = {}
        self.new_attempts: dict[str, dict[str, Any]] = {}
        """Attempt rows not yet inserted, by id (updates before the flush go into them)."""
        self.attempt_updates: dict[str, dict[str, Any]] = {}
        self.results: list[dict[str, Any]] = []
        self.artifacts: list[dict[str, Any]] = []
        self._pending: dict[str, dict[str, Any]] = {}
        self.last_flush = time.monotonic()

    @property
    def dirty(self) -> bool:
        return bool(
            self.task_updates or self.new_attempts or self.attempt_updates or self.results
            or self.artifacts or self.new_tasks
        )

    def tasks_new(self, run_id: str, n_tasks: int, rows: dict[int, dict[str, Any]]) -> None:
        """Task rows (by provisional id, see :class:`corral.store.writes.NewTasks`) written
        with a later flush: when their task ended, or :data:`ROWS_WAIT` seconds on, whichever
        comes first; ``n_tasks``: the run's task count with them."""
        self._new_run = (run_id, n_tasks)
        self.new_tasks.update(rows)
        born = time.monotonic()
        for provisional in rows:
            self._born[provisional] = born

    def task(self, task_id: int, **values: Any) -> None:
        if task_id < 0:
            row = self.new_tasks.get(task_id)
            if row is not None:
                row.update(values)
                return
        self.task_updates.setdefault(task_id, {}).update(values)

    def attempt_new(self, row: dict[str, Any]) -> None:
        self.new_attempts[row["id"]] = row

    def attempt(self, attempt_id: str, **values: Any) -> None:
        row = self.new_attempts.get(attempt_id)
        if row is not None:
            row.update(values)
            return
        self.attempt_updates.setdefault(attempt_id, {}).update(values)

    def result(self, row: dict[str, Any]) -> None:
        self.results.append(row)
        self._pending[row["key"]] = row

    def pending_value(self, key: str) -> bytes | None:
        """The pickled value of a result recorded but not yet flushed."""
        row = self._pending.get(key)
        if row is None:
            return None
        if row["value"] is not None:
            return bytes(row["value"])
        return self.store.cas.get_bytes(row["digest"])

    def artifact(self, row: dict[str, Any]) -> None:
        self.artifacts.append(row)

    def task_result(self, run_id: str, task_id: int, key: str, name: str, attempt_id: str | None,
                    data: bytes, files: list[Path], now: float,
                    stored: tuple[str, int] | None = None) -> None:
        """Record a finished task: its pickled value (inline or in the CAS; ``stored`` is the
        (digest, size) of a value a worker put in the CAS already, ``data`` then unused), the
        digest of each output file (which stays where it is: the CAS keeps a clone or a small
        copy at most, see :meth:`corral.store.cas.CAS.keep_file`), a ``results`` row under its
        key, and one artifact row per output file and for the value (provenance)."""
        common = {"run_id": run_id, "task_id": task_id, "attempt_id": attempt_id,
                  "task_key": key, "created_at": now}
        outputs: dict[str, str] = {}
        for f in files:
            digest = file_digest(f)
            size = f.stat().st_size
            self.store.cas.keep_file(f, digest, size, deferred=True)
            outputs[str(f)] = digest
            self.artifact({"digest": digest, "path": str(f), "kind": "file", "size": size,
                           **common})
        if stored is not None:
            record: dict[str, Any] = {"value": None, "digest": stored[0], "size": stored[1]}
        else:
            record = self.store.value_record(data, deferred=True)
        self.artifact({"digest": record["digest"] or digest_bytes(data), "path": None,
                       "kind": "value", "size": record["size"], **common})
        self.result({"key": key, "task_name": name, "run_id": run_id, "attempt_id": attempt_id,
                     "created_at": now, "last_used": now, "outputs": outputs or None, **record})

    def flush(self, wait_rows: bool = False) -> None:
        """Write what was recorded, in one transaction. ``wait_rows``: new task rows whose
        task has not ended keep waiting (up to :data:`ROWS_WAIT`), with their attempts."""
        if not self.dirty:
            return
        new_tasks, waiting = self._rows_due(wait_rows)
        if new_tasks is None and not (self.task_updates or self.new_attempts or self.results
                                      or self.attempt_updates or self.artifacts):
            self.new_attempts.update(waiting)
            self.last_flush = time.monotonic()  # (looked at again after the flush interval)
            return  # only rows that wait
        try:
            self.store.cas.sync()  # the blobs the rows below refer to are on disk first
            ids = self.store.write_batch(self.results, self.new_attempts, self.artifacts,
                                         self.task_updates, self.attempt_updates, new_tasks)
        except OSError as exc:
            self.new_attempts.update(waiting)
            raise self.store.write_error(exc) from exc
        except BaseException:
            self.new_attempts.update(waiting)
            raise
        if new_tasks is not None:
            for row in new_tasks.rows:
                del self.new_tasks[provisional_id(row["idx"])]
                del self._born[provisional_id(row["idx"])]
        if ids and self.on_task_ids is not None:
            self.on_task_ids(ids)
        self.task_updates.clear()
        self.new_attempts = waiting
        self.attempt_updates.clear()
        self.results.clear()
        self.artifacts.clear()
        self._pending.clear()
        self.last_flush = time.monotonic()

    def _rows_due(self, wait_rows: bool) -> tuple[NewTasks | None, dict[str, dict[str, Any]]]:
        """The new task rows to write now, and the attempt rows that wait with the others
        (taken out of :attr:`new_attempts`)."""
        if not self.new_tasks:
            return None, {}
        now, born = time.monotonic(), self._born
        due = [row for p, row in self.new_tasks.items()
               if not wait_rows or row["state"] in ENDED_TASK_STATES or now - born[p] >= ROWS_WAIT]
        waiting: dict[str, dict[str, Any]] = {}
        if len(due) < len(self.new_tasks):
            rows = self.new_tasks.keys() - {provisional_id(row["idx"]) for row in due}
            waiting = {a: row for a, row in self.new_attempts.items() if row["task_id"] in rows}
            for a in waiting:
                del self.new_attempts[a]
        if not due:
            return None, waiting
        return NewTasks(self._new_run[0], self._new_run[1], due), waiting
