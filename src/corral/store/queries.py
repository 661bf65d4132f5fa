"""Read queries of the reports and provenance (lineage, PROV, run comparison), and of a big run's
status (its tasks by group, sealed in ``task_summary`` when it ends; a page of its tasks), in SQL."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from corral.states import TaskState

from . import schema as t
from .bulk import executemany


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


# ------------------------------------------------------------------ a big run's status, grouped


def task_groups(c: Connection, run_id: str) -> list[dict[str, Any]]:
    """Per task group of a run (a map's elements share one; a task outside maps has its own
    row, ``grp`` empty): its size, first and last task index, tries, counts by state, and over
    its attempts the longest wall time, total CPU time, largest peak memory and hosts; in the
    order of the first task. One pass of SQL GROUP BY: the rows themselves are not loaded."""
    tk, at = t.tasks, t.attempts
    key = sa.case((tk.c.grp == "", tk.c.name), else_=tk.c.grp)
    states = (
        sa.select(tk.c.grp, key.label("gkey"), tk.c.state, sa.func.count().label("n"),
                  sa.func.sum(tk.c.attempts).label("tries"), sa.func.min(tk.c.idx).label("first"),
                  sa.func.max(tk.c.idx).label("last"))
        .where(tk.c.run_id == run_id).group_by(tk.c.grp, key, tk.c.state)
    )
    groups: dict[str, dict[str, Any]] = {}
    for r in c.execute(states):
        g = groups.setdefault(r.gkey, {"grp": r.grp, "n": 0, "tries": 0, "first": r.first,
                                       "last": r.last, "states": {}, "wall": None, "cpu": None,
                                       "peak_rss": None, "hosts": 0, "host": None})
        g["n"] += r.n
        g["tries"] += int(r.tries or 0)
        g["first"], g["last"] = min(g["first"], r.first), max(g["last"], r.last)
        g["states"][r.state] = r.n
    cpu = sa.func.coalesce(at.c.cpu_user, 0) + sa.func.coalesce(at.c.cpu_system, 0)
    figures = (
        sa.select(key.label("gkey"), sa.func.max(at.c.wall).label("wall"),
                  sa.func.sum(cpu).label("cpu"), sa.func.max(at.c.peak_rss).label("peak"),
                  sa.func.count(sa.distinct(at.c.host)).label("hosts"),
                  sa.func.min(at.c.host).label("host"))
        .select_from(at.join(tk, tk.c.id == at.c.task_id))
        .where(at.c.run_id == run_id).group_by(key)
    )
    for r in c.execute(figures):
        if r.gkey in groups:
            groups[r.gkey].update(wall=r.wall, cpu=r.cpu, peak_rss=r.peak, hosts=r.hosts,
                                  host=r.host)
    for gkey, g in groups.items():
        g["name"] = gkey
    return sorted(groups.values(), key=lambda g: g["first"])


def tasks_at(c: Connection, run_id: str, idxs: Iterable[int] = (),
             failed_in: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The task rows of a run at the task indices ``idxs``, and its failed tasks of the groups
    ``failed_in``, in task order."""
    rows: dict[int, dict[str, Any]] = {}
    wanted = sorted(set(idxs))
    for i in range(0, len(wanted), 900):
        q = sa.select(t.tasks).where(t.tasks.c.run_id == run_id,
                                     t.tasks.c.idx.in_(wanted[i : i + 900]))
        rows.update({r["idx"]: dict(r) for r in c.execute(q).mappings()})
    groups = sorted(set(failed_in))
    if groups:
        q = sa.select(t.tasks).where(t.tasks.c.run_id == run_id, t.tasks.c.grp.in_(groups),
                                     t.tasks.c.state == TaskState.FAILED.value)
        rows.update({r["idx"]: dict(r) for r in c.execute(q).mappings()})
    return [rows[i] for i in sorted(rows)]


def attempts_of(c: Connection, task_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Every attempt of the tasks ``task_ids``, by attempt number."""
    wanted = sorted(set(task_ids))
    out: list[dict[str, Any]] = []
    for i in range(0, len(wanted), 900):
        q = sa.select(t.attempts).where(t.attempts.c.task_id.in_(wanted[i : i + 900]))
        out += [dict(r) for r in c.execute(q.order_by(t.attempts.c.number)).mappings()]
    return out


SUMMARY_FIELDS = ("name", "grp", "n", "first", "last", "tries", "states", "wall", "cpu",
                  "peak_rss", "hosts", "host")
"""The columns of ``task_summary`` besides ``run_id``: the keys of a :func:`task_groups` group."""


def seal_summary(c: Connection, run_id: str) -> None:
    """Write an ended run's :func:`task_groups` to ``task_summary`` (replacing any), so that its
    status reads one row per group instead of counting every task and attempt again."""
    drop_summary(c, run_id)
    rows = [{"run_id": run_id, **{k: g[k] for k in SUMMARY_FIELDS}} for g in task_groups(c, run_id)]
    executemany(c, t.task_summary.insert(), rows, "task_summary.insert")


def drop_summary(c: Connection, run_id: str) -> None:
    """Forget a run's summary: its tasks change again (resumed, reset or cancelled)."""
    c.execute(t.task_summary.delete().where(t.task_summary.c.run_id == run_id))


def summary(c: Connection, run_id: str) -> list[dict[str, Any]] | None:
    """The groups of an ended run as :func:`task_groups` counts them, from ``task_summary``;
    None when the run has no summary (not ended, or ended before the summaries existed)."""
    cols = [t.task_summary.c[k] for k in SUMMARY_FIELDS]
    q = sa.select(*cols).where(t.task_summary.c.run_id == run_id).order_by(t.task_summary.c.first)
    rows = [dict(r) for r in c.execute(q).mappings()]
    return rows or None


def task_page(c: Connection, run_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
    """The task rows of a run from the ``offset``-th in task order, at most ``limit`` (0: all)."""
    q = sa.select(t.tasks).where(t.tasks.c.run_id == run_id).order_by(t.tasks.c.idx)
    q = q.offset(offset).limit(limit if limit > 0 else None)
    return [dict(r) for r in c.execute(q).mappings()]


def previous_task_rows(c: Connection, run_id: str, n_tasks: int
                       ) -> tuple[str, dict[int, tuple[Any, ...]]] | None:
    """The newest other run of the same pipeline, file and parameters with ``n_tasks`` tasks,
    and its task rows by index as ``(name, key, grp, kind, resources)``; None without one."""
    identity = sa.select(t.runs.c.identity).where(t.runs.c.id == run_id).scalar_subquery()
    source = c.execute(
        sa.select(t.runs.c.id).where(t.runs.c.identity == identity, t.runs.c.id != run_id,
                                     t.runs.c.n_tasks == n_tasks)
        .order_by(t.runs.c.created_at.desc()).limit(1)).scalar()
    if source is None:
        return None
    tk = t.tasks.c
    q = sa.select(tk.idx, tk.name, tk.key, tk.grp, tk.kind, sa.cast(tk.resources, sa.Text)).where(
        tk.run_id == source)
    decoded: dict[str | None, Any] = {None: None}  # each distinct resources text parsed once
    rows: dict[int, tuple[Any, ...]] = {}
    for idx, name, key, grp, kind, res in c.execute(q):
        if res not in decoded:
            decoded[res] = json.loads(res)
        rows[idx] = (name, key, grp, kind, decoded[res])
    return str(source), rows


def completed(c: Connection, keys: list[str]) -> dict[str, dict[str, str]]:
    """Stored results among ``keys`` with their recorded output files: ``{key: {path:
    digest}}``. On SQLite one prepared statement per 900 keys, its JSON decoded once per
    distinct text (the dicts are shared: read them only): a re-check asks for every key of a
    run, a hundred thousand or more."""
    found: dict[str, dict[str, str]] = {}
    if c.dialect.name != "sqlite":
        for i in range(0, len(keys), 900):
            q = sa.select(t.results.c.key, t.results.c.outputs).where(
                t.results.c.key.in_(keys[i : i + 900]))
            found.update((key, outputs or {}) for key, outputs in c.execute(q))
        return found
    decoded: dict[str | None, dict[str, str]] = {None: {}}
    for i in range(0, len(keys), 900):
        part = tuple(keys[i : i + 900])
        sql = f"SELECT key, outputs FROM results WHERE key IN ({', '.join('?' * len(part))})"
        for key, text in c.exec_driver_sql(sql, part).fetchall():
            if text not in decoded:
                decoded[text] = json.loads(text) or {}
            found[key] = decoded[text]
    return found
