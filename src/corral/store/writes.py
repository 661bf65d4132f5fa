"""The engine's writes, in SQL: task rows of a (resumed) run, its edges, the batched writes of
one engine iteration (results, attempts, artifacts, task and attempt updates), and the quick
claim of a detached run's reconcile. The engine buffers; only this package speaks SQL."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema as t
from .bulk import executemany
from .queries import drop_summary


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


def write_tasks(c: Connection, run_id: str, fresh: Iterable[list[dict[str, Any]]],
                reset: list[dict[str, Any]], pending: str, n_tasks: int) -> None:
    """Insert new task rows (given in chunks, each built when it is written); ``reset`` rows
    (``_id``, ``idx``, ``key``, ``params``) of a resumed run become ``pending`` again; the
    run's task count."""
    for chunk in fresh:
        executemany(c, t.tasks.insert(), chunk, "tasks.insert")
    if reset:
        c.execute(
            t.tasks.update().where(t.tasks.c.id == sa.bindparam("_id")).values(
                idx=sa.bindparam("idx"), key=sa.bindparam("key"),
                params=sa.bindparam("params"), state=pending,
            ),
            reset,
        )
    c.execute(t.runs.update().where(t.runs.c.id == run_id).values(n_tasks=n_tasks))


def replace_edges(c: Connection, run_id: str, rows: list[dict[str, Any]]) -> None:
    c.execute(t.edges.delete().where(t.edges.c.run_id == run_id))
    if rows:
        executemany(c, t.edges.insert(), rows, "edges.insert")


def add_edges(c: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        c.execute(t.edges.insert(), rows)


def provisional_id(idx: int) -> int:
    """The id the task row of index ``idx`` goes by until it is written with a batch (see
    :class:`NewTasks`)."""
    return -1 - idx


@dataclass
class NewTasks:
    """Task rows written with a batch rather than ahead of it (an interactive executor's
    calls: a row is inserted once, in the state its task reached by then, instead of inserted
    pending and updated as the task goes). Until then a row goes by its
    :func:`provisional_id`, also in the batch's attempt and artifact rows; :func:`write_batch`
    gives the real ids."""

    run_id: str
    n_tasks: int
    """The run's task count once these rows are in."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Each with every column it may be given before it is written."""


def write_batch(c: Connection, results: list[dict[str, Any]],
                new_attempts: Mapping[str, dict[str, Any]], artifacts: list[dict[str, Any]],
                task_updates: Mapping[int, dict[str, Any]],
                attempt_updates: Mapping[str, dict[str, Any]],
                new_tasks: NewTasks | None = None) -> dict[int, int]:
    """One engine iteration's writes, in one transaction; the ids of the ``new_tasks`` rows,
    by task index."""
    by_idx = _insert_tasks(c, new_tasks) if new_tasks and new_tasks.rows else {}
    ids = {provisional_id(idx): row_id for idx, row_id in by_idx.items()}
    insert_ignore(c, t.results, results, "key")
    if new_attempts:
        # one executemany needs the same columns in every row: attempts updated before the
        # flush (started, or already finished) carry more columns than fresh ones
        cols = {k for row in new_attempts.values() for k in row}
        rows: list[dict[str, Any]] = [{k: row.get(k) for k in cols}
                                      for row in new_attempts.values()]
        if ids:
            for row in rows:
                row["task_id"] = ids.get(row["task_id"], row["task_id"])
        executemany(c, t.attempts.insert(), rows, "attempts.insert")
    if artifacts:
        if ids:
            artifacts = [{**a, "task_id": ids.get(a["task_id"], a["task_id"])} for a in artifacts]
        executemany(c, t.artifacts.insert(), artifacts, "artifacts.insert")
    _updates(c, t.tasks, "id", task_updates)
    _updates(c, t.attempts, "id", attempt_updates)
    return by_idx


def _insert_tasks(c: Connection, new: NewTasks) -> dict[int, int]:
    """Insert ``new``'s rows; their ids by index."""
    executemany(c, t.tasks.insert(), new.rows, "tasks.insert")
    tk = t.tasks.c
    first = min(row["idx"] for row in new.rows)
    # (rows given this way are new: nothing else of the run is at their indices or after)
    found = c.execute(sa.select(tk.idx, tk.id).where(tk.run_id == new.run_id, tk.idx >= first))
    wanted = {row["idx"] for row in new.rows}
    c.execute(t.runs.update().where(t.runs.c.id == new.run_id).values(n_tasks=new.n_tasks))
    drop_summary(c, new.run_id)
    return {idx: row_id for idx, row_id in found if idx in wanted}


def _updates(c: Connection, table: sa.Table, key: str, updates: Mapping[Any, dict[str, Any]]) -> None:
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


def claim_free(c: Connection, run_id: str) -> bool:
    """Take a run's engine claim if no process holds it (one compare-and-set)."""
    done = c.execute(
        t.runs.update()
        .where(t.runs.c.id == run_id, t.runs.c.engine_pid.is_(None))
        .values(engine_host=socket.gethostname(), engine_pid=os.getpid(), heartbeat_at=time.time())
    ).rowcount
    return bool(done == 1)


def release_own_claim(c: Connection, run_id: str) -> None:
    """Give up this process's claim of a run (kept if another process took it over)."""
    c.execute(t.runs.update().where(
        t.runs.c.id == run_id, t.runs.c.engine_pid == os.getpid(),
        t.runs.c.engine_host == socket.gethostname(),
    ).values(engine_pid=None, heartbeat_at=time.time()))


def control_of(c: Connection, run_id: str) -> str:
    value = c.execute(sa.select(t.runs.c.control).where(t.runs.c.id == run_id)).scalar()
    return str(value or "none")


def copy_tasks(c: Connection, run_id: str, source: str, idxs: list[int], cached: str) -> None:
    """Task rows of run ``source`` at the indices ``idxs`` become rows of ``run_id``, ``cached``
    and not yet tried: one INSERT ... SELECT per range of consecutive indices, so that a
    re-checked run does not build and send its unchanged rows again."""
    ranges: list[dict[str, int]] = []
    for i in idxs:
        if ranges and ranges[-1]["b"] == i - 1:
            ranges[-1]["b"] = i
        else:
            ranges.append({"a": i, "b": i})
    if not ranges:
        return
    tk = t.tasks.c
    same = [tk.idx, tk.name, tk.grp, tk.kind, tk.key, tk.code_hash, tk.params, tk.inputs,
            tk.upstream, tk.resources]
    rows = sa.select(sa.literal(run_id), *same, sa.literal(cached), sa.literal(True),
                     sa.literal(0)).where(tk.run_id == source,
                                          tk.idx.between(sa.bindparam("a"), sa.bindparam("b")))
    names = ["run_id", *(col.name for col in same), "state", "cached", "attempts"]
    c.execute(t.tasks.insert().from_select(names, rows), ranges)
