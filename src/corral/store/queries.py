"""Read queries of the reports and provenance (lineage, PROV, run comparison), in SQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema as t


def value_digests(c: Connection, keys: Iterable[str]) -> dict[str, str]:
    """Digest of the stored value of each task key (any run)."""
    wanted = sorted(set(keys))
    out: dict[str, str] = {}
    for i in range(0, len(wanted), 900):
        q = sa.select(t.artifacts.c.task_key, t.artifacts.c.digest).where(
            t.artifacts.c.task_key.in_(wanted[i : i + 900]), t.artifacts.c.kind == "value"
        )
        out.update({r.task_key: r.digest for r in c.execute(q)})
    return out


def previous_task(c: Connection, name: str, run_id: str, before: float) -> dict[str, Any] | None:
    """The newest task called ``name`` in another run created before ``before``."""
    q = (
        sa.select(t.tasks)
        .join(t.runs, t.runs.c.id == t.tasks.c.run_id)
        .where(t.tasks.c.name == name, t.runs.c.created_at < before, t.tasks.c.run_id != run_id)
        .order_by(t.runs.c.created_at.desc())
        .limit(1)
    )
    row = c.execute(q).mappings().first()
    return dict(row) if row else None


def attempt(c: Connection, attempt_id: str) -> dict[str, Any] | None:
    row = c.execute(sa.select(t.attempts).where(t.attempts.c.id == attempt_id)).mappings().first()
    return dict(row) if row else None


def file_artifact(c: Connection, path: str, digest: str) -> dict[str, Any] | None:
    """The newest artifact row of a file with this content."""
    q = (
        sa.select(t.artifacts)
        .where(t.artifacts.c.path == path, t.artifacts.c.digest == digest)
        .order_by(t.artifacts.c.created_at.desc())
        .limit(1)
    )
    row = c.execute(q).mappings().first()
    return dict(row) if row else None
