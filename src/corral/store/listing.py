"""Read queries of the dashboard's runs list (``corral ui``), in SQL: a filtered page of runs with
its total, the task counts by state of the runs on a page, and the values the filters offer.

Each page is one ``LIMIT/OFFSET`` query on ``runs`` (newest first, on the ``created_at`` order)
plus one ``GROUP BY run_id, state`` on ``tasks`` for the page's runs only (``ix_tasks_run_state``),
so a page costs the same with 10 or 10,000 runs in the database (bench/web.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema as t

MAX_FACETS = 200
"""Distinct owners or pipelines offered by a filter (the most recent ones)."""


@dataclass(frozen=True)
class RunFilter:
    """What the runs list is narrowed to; empty fields filter nothing."""

    states: Sequence[str] = ()
    owner: str = ""
    pipeline: str = ""
    search: str = ""
    """A substring of the run id, the pipeline, its source file or the owner."""


def _conditions(f: RunFilter) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    if f.states:
        conds.append(t.runs.c.state.in_(list(f.states)))
    if f.owner:
        conds.append(t.runs.c.owner == f.owner)
    if f.pipeline:
        conds.append(t.runs.c.pipeline == f.pipeline)
    if f.search:
        like = [t.runs.c.id.contains(f.search, autoescape=True),
                t.runs.c.pipeline.contains(f.search, autoescape=True),
                t.runs.c.source.contains(f.search, autoescape=True),
                t.runs.c.owner.contains(f.search, autoescape=True)]
        conds.append(sa.or_(*like))
    return conds


def runs_page(c: Connection, f: RunFilter, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """A page of runs matching ``f``, newest first, and how many match in all."""
    conds = _conditions(f)
    total = c.execute(sa.select(sa.func.count()).select_from(t.runs).where(*conds)).scalar() or 0
    cols = [t.runs.c[name] for name in (
        "id", "pipeline", "source", "executor", "state", "control", "owner", "project",
        "created_at", "started_at", "finished_at", "error", "n_tasks")]
    q = (sa.select(*cols).where(*conds)
         .order_by(t.runs.c.created_at.desc(), t.runs.c.id).limit(limit).offset(offset))
    return [dict(r) for r in c.execute(q).mappings()], int(total)


def task_counts(c: Connection, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """Per run id: its tasks counted by state (runs without tasks are left out)."""
    wanted = sorted(set(run_ids))
    out: dict[str, dict[str, int]] = {}
    for i in range(0, len(wanted), 900):
        q = (sa.select(t.tasks.c.run_id, t.tasks.c.state, sa.func.count())
             .where(t.tasks.c.run_id.in_(wanted[i:i + 900]))
             .group_by(t.tasks.c.run_id, t.tasks.c.state))
        for run_id, state, n in c.execute(q):
            out.setdefault(str(run_id), {})[str(state)] = int(n)
    return out


def facets(c: Connection) -> dict[str, list[str]]:
    """The owners and pipelines of the newest runs, sorted: what the list's filters offer."""
    out: dict[str, list[str]] = {}
    for name in ("owner", "pipeline"):
        col = t.runs.c[name]
        newest = sa.func.max(t.runs.c.created_at)
        q = sa.select(col).group_by(col).order_by(newest.desc()).limit(MAX_FACETS)
        out[name] = sorted(str(v) for v in c.execute(q).scalars() if v)
    return out
