"""Batched writes of one engine iteration: one transaction for many task and attempt changes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corral.hashing import digest_bytes
from corral.store import Store
from corral.store import schema as t
from corral.store.bulk import executemany


def insert_ignore(conn: Connection, table: sa.Table, rows: list[dict[str, Any]], key: str) -> None:
    """Insert rows, skipping those whose primary key already exists (SQLite and PostgreSQL)."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
        executemany(conn, stmt, rows, f"{table.name}.insert_ignore")
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=[key]), rows)
    else:
        existing = {
            r[0] for r in conn.execute(
                sa.select(table.c[key]).where(table.c[key].in_([r[key] for r in rows]))
            )
        }
        fresh = [r for r in rows if r[key] not in existing]
        if fresh:
            conn.execute(table.insert(), fresh)


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
                    data: bytes, files: list[Path], now: float) -> None:
        """Record a finished task: its pickled value (inline or in the CAS), copies of its
        output files in the CAS, a ``results`` row under its key, and one artifact row per
        output file and for the value (provenance)."""
        common = {"run_id": run_id, "task_id": task_id, "attempt_id": attempt_id,
                  "task_key": key, "created_at": now}
        outputs: dict[str, str] = {}
        for f in files:
            digest = self.store.cas.put_file(f, deferred=True)
            outputs[str(f)] = digest
            self.artifact({"digest": digest, "path": str(f), "kind": "file",
                           "size": f.stat().st_size, **common})
        record = self.store.value_record(data, deferred=True)
        self.artifact({"digest": record["digest"] or digest_bytes(data), "path": None,
                       "kind": "value", "size": len(data), **common})
        self.result({"key": key, "task_name": name, "run_id": run_id, "attempt_id": attempt_id,
                     "created_at": now, "last_used": now, "outputs": outputs or None, **record})

    def flush(self) -> None:
        if not self.dirty:
            return
        try:
            self.store.cas.sync()  # the blobs the rows below refer to are on disk first
        except OSError as exc:
            raise self.store.write_error(exc) from exc
        with self.store.transaction() as c:
            insert_ignore(c, t.results, self.results, "key")
            if self.new_attempts:
                # one executemany needs the same columns in every row: attempts updated before
                # the flush (started, or already finished) carry more columns than fresh ones
                cols = {k for row in self.new_attempts.values() for k in row}
                rows = [{k: row.get(k) for k in cols} for row in self.new_attempts.values()]
                executemany(c, t.attempts.insert(), rows, "attempts.insert")
            if self.artifacts:
                executemany(c, t.artifacts.insert(), self.artifacts, "artifacts.insert")
            self._updates(c, t.tasks, "id", self.task_updates)
            self._updates(c, t.attempts, "id", self.attempt_updates)
        self.task_updates.clear()
        self.new_attempts.clear()
        self.attempt_updates.clear()
        self.results.clear()
        self.artifacts.clear()
        self._pending.clear()
        self.last_flush = time.monotonic()

    @staticmethod
    def _updates(c: Connection, table: sa.Table, key: str, updates: dict[Any, dict[str, Any]]) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for ident, values in updates.items():
            cols = tuple(sorted(values))
            groups.setdefault(cols, []).append({"_id": ident, **values})
        for cols, rows in groups.items():
            stmt = (
                table.update()
                .where(table.c[key] == sa.bindparam("_id"))
                .values({col: sa.bindparam(col) for col in cols})
            )
            executemany(c, stmt, rows, f"{table.name}.update")
