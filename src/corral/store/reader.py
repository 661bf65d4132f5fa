"""Reading a working directory's SQLite store without SQLAlchemy, for the inspection commands.

``corral runs`` and ``corral status`` of an ended run only read a few rows; importing SQLAlchemy
and building an engine costs more than the rest of the command together (about half of its
start-up on this project's machine). :func:`open_reader` gives those commands a
:class:`SqliteReader` over the standard library's ``sqlite3`` when the store is the embedded
SQLite file and its schema is current; otherwise it returns None and the caller opens the full
:class:`~corral.store.Store`, which creates, migrates, rides out outages and reports errors.

The reader returns the same rows as :class:`~corral.store.Store` (a test compares them): the
columns that SQLAlchemy would turn from JSON text into values, or from 0/1 into booleans, are
named here and checked against :mod:`corral.store.schema` by the same test.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, cast

from corral.errors import RunNotFound
from corral.states import TaskState
from corral.store.rows import AttemptRow, RunRow, TaskRow
from corral.store.version import HEAD_REVISION

SUMMARY_FIELDS = ("name", "grp", "n", "first", "last", "tries", "states", "wall", "cpu",
                  "peak_rss", "hosts", "host")
"""The columns of ``task_summary`` a status reads (:data:`corral.store.queries.SUMMARY_FIELDS`)."""

JSON_COLUMNS = {
    "runs": frozenset({"params", "executor", "environment", "options"}),
    "tasks": frozenset({"params", "inputs", "upstream", "resources"}),
    "attempts": frozenset({"resources", "extra"}),
    "task_summary": frozenset({"states"}),
}
"""The columns each table stores as JSON text (``sa.JSON`` in the schema)."""
BOOLEAN_COLUMNS = {"runs": frozenset[str](), "tasks": frozenset({"cached"}),
                   "attempts": frozenset[str](), "task_summary": frozenset[str]()}
"""The columns each table stores as 0/1 (``sa.Boolean`` in the schema)."""
LATEST = ("latest", "last", "-")


def open_reader(workdir: Path, url: str | None) -> SqliteReader | None:
    """A reader of the working directory's own SQLite store, or None when only the full store
    will do: another database (``--db``), no database yet, or a schema that is not current."""
    if url is not None:
        return None
    path = workdir / ".corral" / "state.db"
    if not path.is_file():
        return None
    try:
        reader = SqliteReader(path)
    except sqlite3.Error:
        return None
    if reader.version() != HEAD_REVISION:
        reader.close()
        return None
    return reader


class SqliteReader:
    """Read-only queries of :class:`~corral.store.Store`, over one ``sqlite3`` connection."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _cursor(self) -> Iterator[sqlite3.Cursor]:
        with closing(self._conn.cursor()) as cur:
            yield cur

    def version(self) -> str | None:
        try:
            with self._cursor() as cur:
                row = cur.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            return None  # no such table: a database Corral did not make, or not yet
        return None if row is None else str(row[0])

    def _rows(self, table: str, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        with self._cursor() as cur:
            rows = cur.execute(sql, args).fetchall()
        return [_decoded(table, row) for row in rows]

    def get_run(self, run_id: str) -> RunRow:
        """As :meth:`corral.store.Store.get_run`: by id, unique id prefix, or ``latest``."""
        if run_id in LATEST:
            rows = self._rows("runs", "SELECT * FROM runs ORDER BY created_at DESC LIMIT 1", ())
        else:
            pattern = run_id.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"
            rows = self._rows("runs", "SELECT * FROM runs WHERE id LIKE ? ESCAPE '/' LIMIT 2",
                              (pattern,))
        if not rows:
            raise RunNotFound(f"no run matches {run_id!r}; list runs with `corral runs`")
        if len(rows) > 1:
            raise RunNotFound(f"{run_id!r} matches several runs; give more characters of the id")
        return cast(RunRow, rows[0])

    def list_runs(self, limit: int = 50) -> list[RunRow]:
        rows = self._rows("runs", "SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,))
        return cast(list[RunRow], rows)

    def tasks(self, run_id: str) -> list[TaskRow]:
        rows = self._rows("tasks", "SELECT * FROM tasks WHERE run_id = ? ORDER BY idx", (run_id,))
        return cast(list[TaskRow], rows)

    def attempts(self, run_id: str) -> list[AttemptRow]:
        rows = self._rows("attempts", "SELECT * FROM attempts WHERE run_id = ? ORDER BY number",
                          (run_id,))
        return cast(list[AttemptRow], rows)


    def task_groups(self, run_id: str) -> list[dict[str, Any]] | None:
        """An ended run's tasks by group, as :meth:`corral.store.Store.task_groups` gives them,
        from its summary; None when it has none (the full store counts them)."""
        cols = ", ".join(f'"{name}"' for name in SUMMARY_FIELDS)
        rows = self._rows("task_summary", f"SELECT {cols} FROM task_summary WHERE run_id = ? "
                          'ORDER BY "first"', (run_id,))
        return rows or None

    def tasks_at(self, run_id: str, idxs: Iterable[int] = (), failed_in: Iterable[str] = ()
                 ) -> tuple[list[TaskRow], list[AttemptRow]]:
        """As :meth:`corral.store.Store.tasks_at`."""
        rows: dict[int, dict[str, Any]] = {}
        wanted = sorted(set(idxs))
        for i in range(0, len(wanted), 900):
            part = wanted[i : i + 900]
            sql = f"SELECT * FROM tasks WHERE run_id = ? AND idx IN ({', '.join('?' * len(part))})"
            rows.update({r["idx"]: r for r in self._rows("tasks", sql, (run_id, *part))})
        groups = sorted(set(failed_in))
        for i in range(0, len(groups), 900):
            names = groups[i : i + 900]
            sql = (f"SELECT * FROM tasks WHERE run_id = ? AND state = ? "
                   f"AND grp IN ({', '.join('?' * len(names))})")
            args = (run_id, TaskState.FAILED.value, *names)
            rows.update({r["idx"]: r for r in self._rows("tasks", sql, args)})
        tasks = [rows[i] for i in sorted(rows)]
        return cast(list[TaskRow], tasks), self._attempts_of([r["id"] for r in tasks])

    def task_page(self, run_id: str, offset: int, limit: int
                  ) -> tuple[list[TaskRow], list[AttemptRow]]:
        """As :meth:`corral.store.Store.task_page`."""
        tasks = self._rows("tasks", "SELECT * FROM tasks WHERE run_id = ? ORDER BY idx "
                           "LIMIT ? OFFSET ?", (run_id, limit if limit > 0 else -1, offset))
        return cast(list[TaskRow], tasks), self._attempts_of([r["id"] for r in tasks])

    def _attempts_of(self, task_ids: list[int]) -> list[AttemptRow]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(task_ids), 900):
            part = task_ids[i : i + 900]
            sql = (f"SELECT * FROM attempts WHERE task_id IN ({', '.join('?' * len(part))}) "
                   "ORDER BY number")
            out += self._rows("attempts", sql, tuple(part))
        return cast(list[AttemptRow], out)


def _decoded(table: str, row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for name in JSON_COLUMNS[table]:
        if out.get(name) is not None:
            out[name] = json.loads(out[name])
    for name in BOOLEAN_COLUMNS[table]:
        if out.get(name) is not None:
            out[name] = bool(out[name])
    return out
