"""Batched writes of one engine iteration: changes collected in memory, written in one
transaction by :meth:`corral.store.Store.write_batch`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from corral.hashing import digest_bytes, file_digest
from corral.store import Store


class Recorder:
    """Collects changes and writes them in one transaction on :meth:`flush`."""

    def __init__(self, store: Store) -> None:
        self.store = store
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
            or self.artifacts
        )

    def task(self, task_id: int, **values: Any) -> None:
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

    def flush(self) -> None:
        if not self.dirty:
            return
        try:
            self.store.cas.sync()  # the blobs the rows below refer to are on disk first
        except OSError as exc:
            raise self.store.write_error(exc) from exc
        self.store.write_batch(self.results, self.new_attempts, self.artifacts,
                               self.task_updates, self.attempt_updates)
        self.task_updates.clear()
        self.new_attempts.clear()
        self.attempt_updates.clear()
        self.results.clear()
        self.artifacts.clear()
        self._pending.clear()
        self.last_flush = time.monotonic()
