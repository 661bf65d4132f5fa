"""Fast executemany for SQLite, the embedded default.

SQLAlchemy builds a parameter dictionary per row and runs each value through its type's
processor; for the engine's batches of thousands of rows that is most of the write time. For
SQLite the statement is compiled once per shape and the rows are handed to the driver as tuples,
with JSON columns serialised here. Other databases take the ordinary SQLAlchemy path (their
drivers need SQLAlchemy's type adaptation, e.g. psycopg's JSON wrapper).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_Prepared = tuple[str, list[str], list[Callable[[Any], Any] | None], dict[str, Any]]
_CACHE: dict[tuple[int, tuple[str, ...]], _Prepared] = {}


def _json(value: Any) -> Any:
    return None if value is None else json.dumps(value)


def _prepare(conn: Connection, stmt: Any, key: tuple[int, tuple[str, ...]],
             columns: Sequence[str]) -> _Prepared:
    prepared = _CACHE.get(key)
    if prepared is None:
        compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
        names = list(compiled.positiontup or [])
        converters: list[Callable[[Any], Any] | None] = [
            _json if isinstance(compiled.binds[n].type, sa.JSON) else None for n in names
        ]
        table = getattr(stmt, "table", None)
        defaults: dict[str, Any] = {}
        for name in names:
            col = table.c.get(name) if table is not None else None
            default = getattr(col, "default", None)
            if name not in columns and default is not None and default.is_scalar:
                defaults[name] = default.arg  # a Python-side column default SQLAlchemy would add
        prepared = (compiled.string, names, converters, defaults)
        _CACHE[key] = prepared
    return prepared


def executemany(conn: Connection, stmt: Any, rows: list[dict[str, Any]], shape: str) -> None:
    """Run ``stmt`` for every row (all rows have the same keys). ``shape`` names the statement
    form for the compile cache (rows' keys are added to it)."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        conn.execute(stmt, rows)
        return
    columns = tuple(rows[0])
    sql, names, converters, defaults = _prepare(conn, stmt, (hash(shape), columns), columns)
    if defaults:
        rows = [{**defaults, **row} for row in rows]
    getter = itemgetter(*names)
    json_at = [i for i, conv in enumerate(converters) if conv is not None]
    if len(names) == 1:
        params: list[Any] = [(getter(row),) for row in rows]
    elif not json_at:
        params = [getter(row) for row in rows]
    else:
        params = []
        memo: dict[int, str] = {}  # the same object in many rows is serialised once
        for row in rows:
            values = list(getter(row))
            for i in json_at:
                v = values[i]
                if v is not None:
                    text = memo.get(id(v))
                    if text is None:
                        text = memo[id(v)] = json.dumps(v)
                    values[i] = text
            params.append(tuple(values))
    conn.exec_driver_sql(sql, params)
