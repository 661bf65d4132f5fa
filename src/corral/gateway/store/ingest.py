"""Metrics ingestion: runs reported by ``corral run --report-to URL`` from anywhere, kept next to
the gateway's own jobs. Mixed into :class:`~.gateway_store.GatewayStore`.

A report is an upsert keyed by the run's id: the same report posted twice changes nothing, and a
report never moves a run out of an ended state (succeeded, failed, cancelled): a late progress
report of an ended run is ignored whole. A run is seen by its owner (the reporting token's user),
the members of its project and admins; to anyone else it does not exist (404).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from corral.states import TERMINAL_RUN_STATES, RunState, TaskState

from .errors import Conflict, GatewayError, NotFound
from .tables import Project, ProjectMember, ReportedRun, ReportedTask, User

MAX_TASKS_PER_REPORT = 1000
"""Tasks in one report; a longer list is refused (413): the client sends them in batches."""


class PayloadTooLarge(GatewayError):
    """A report over a size limit."""

    status = 413


@dataclass(frozen=True)
class TaskReport:
    """One task's metrics (its last attempt's); ``name`` is unique within the run."""

    name: str
    state: TaskState
    wall: float | None = None
    cpu: float | None = None
    peak_memory: int | None = None
    host: str | None = None
    exit_code: int | None = None
    attempts: int = 0


@dataclass(frozen=True)
class RunReport:
    """What a client says about one run: its description, progress and a batch of its tasks."""

    run_id: str
    pipeline: str
    executor: str
    state: RunState
    counts: Mapping[TaskState, int]
    project: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    tasks: tuple[TaskReport, ...] = ()


class Caller(Protocol):
    """Who reports or reads (a :class:`~.gateway_store.Principal`)."""

    @property
    def user_id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...


def _naive(value: datetime | None) -> datetime | None:
    """Naive UTC, as the gateway stores times (SQLite keeps no zone)."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def report_dict(run: ReportedRun, owner: str, project: str | None) -> dict[str, Any]:
    """A reported run as the API shows it."""
    return {
        "run_id": run.run_id, "owner": owner, "project": project, "pipeline": run.pipeline,
        "executor": run.executor, "state": run.state, "ended_state": run.state in TERMINAL_RUN_STATES,
        "counts": json.loads(run.counts or "{}"), "started": _iso(run.started), "ended": _iso(run.ended),
        "first_report": _iso(run.first_report), "last_report": _iso(run.last_report),
    }


def task_dict(t: ReportedTask) -> dict[str, Any]:
    return {"name": t.name, "state": t.state, "wall": t.wall, "cpu": t.cpu, "peak_memory": t.peak_memory,
            "host": t.host, "exit_code": t.exit_code, "attempts": t.attempts}


def _visible(who: Caller) -> sa.ColumnElement[bool]:
    """Runs the caller may see: own, of a project the caller is a member of; all for an admin."""
    if who.role == "admin":
        return sa.true()
    member_of = sa.select(ProjectMember.project_id).where(ProjectMember.user_id == who.user_id)
    return sa.or_(ReportedRun.owner_id == who.user_id, ReportedRun.project_id.in_(member_of))


def _apply_run(run: ReportedRun, report: RunReport, project_id: int | None) -> bool:
    """Copy ``report`` onto ``run``; whether anything changed."""
    before = (run.project_id, run.pipeline, run.executor, run.state, run.counts, run.started, run.ended)
    counts = json.dumps({str(k): int(v) for k, v in sorted(report.counts.items()) if v}, sort_keys=True)
    started = _naive(report.started)
    if run.started is not None and (started is None or run.started < started):
        started = run.started  # the first start stays
    run.project_id = project_id if project_id is not None else run.project_id
    run.pipeline, run.executor, run.state, run.counts = report.pipeline, report.executor, report.state, counts
    run.started = started
    run.ended = _naive(report.ended) if report.state in TERMINAL_RUN_STATES else None
    return before != (run.project_id, run.pipeline, run.executor, run.state, run.counts, run.started, run.ended)


def _apply_tasks(s: Session, run_ref: int, tasks: tuple[TaskReport, ...]) -> bool:
    """Upsert a batch of tasks; whether anything changed."""
    names = [t.name for t in tasks]
    found = {t.name: t for t in s.scalars(sa.select(ReportedTask).where(
        ReportedTask.run_ref == run_ref, ReportedTask.name.in_(names)))} if names else {}
    changed = False
    for t in tasks:
        values = {"state": t.state.value, "wall": t.wall, "cpu": t.cpu, "peak_memory": t.peak_memory,
                  "host": t.host, "exit_code": t.exit_code, "attempts": t.attempts}
        row = found.get(t.name)
        if row is None:
            row = ReportedTask(run_ref=run_ref, name=t.name, **values)
            s.add(row)
            found[t.name] = row
            changed = True
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            changed = True
    return changed


class IngestMixin:
    """See the module docstring."""

    def session(self) -> AbstractContextManager[Session]:  # implemented by GatewayStore
        raise NotImplementedError

    def report_run(self, who: Caller, report: RunReport) -> dict[str, Any]:
        """Record ``report`` for the caller (``who``: a Principal); the run as it now stands, with
        ``changed``: whether the report changed anything."""
        if len(report.tasks) > MAX_TASKS_PER_REPORT:
            raise PayloadTooLarge(f"{len(report.tasks)} tasks in one report, over the limit of "
                                  f"{MAX_TASKS_PER_REPORT}: send them in batches")
        try:
            return self._report_once(who, report)
        except sa.exc.IntegrityError:  # a concurrent report of the same run inserted its row first
            return self._report_once(who, report)

    def _report_once(self, who: Caller, report: RunReport) -> dict[str, Any]:
        with self.session() as s:
            project_id = self._member_project(s, who, report.project)
            run = s.scalar(sa.select(ReportedRun).where(ReportedRun.run_id == report.run_id))
            at = datetime.now(UTC).replace(tzinfo=None)
            if run is None:
                run = ReportedRun(run_id=report.run_id, owner_id=who.user_id, first_report=at, last_report=at)
                s.add(run)
            elif run.owner_id != who.user_id:
                raise Conflict(f"run {report.run_id!r} was reported by another user: report under your "
                               "own run id (a new corral run)")
            stale = run.state in TERMINAL_RUN_STATES and report.state not in TERMINAL_RUN_STATES
            changed = False
            if not stale:
                changed = _apply_run(run, report, project_id)
                s.flush()
                changed = _apply_tasks(s, run.id, report.tasks) or changed
                if changed:
                    run.last_report = at
            project = s.get(Project, run.project_id) if run.project_id is not None else None
            return {**report_dict(run, who.name, project.name if project else None), "changed": changed}

    @staticmethod
    def _member_project(s: Session, who: Caller, name: str | None) -> int | None:
        if name is None:
            return None
        pid = s.scalar(sa.select(Project.id).join(ProjectMember, ProjectMember.project_id == Project.id)
                       .where(Project.name == name, ProjectMember.user_id == who.user_id))
        if pid is None:
            raise NotFound(f"no project {name!r} of yours: leave the project out, or ask an admin to add you")
        return pid

    @staticmethod
    def _report_query() -> sa.Select[ReportedRun, str, str]:
        return (sa.select(ReportedRun, User.name, Project.name).join(User, User.id == ReportedRun.owner_id)
                .outerjoin(Project, Project.id == ReportedRun.project_id))

    def list_reports(self, who: Caller, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the runs the caller may see, newest first, and how many there are."""
        with self.session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(ReportedRun).where(_visible(who))) or 0
            q = (self._report_query().where(_visible(who))
                 .order_by(ReportedRun.first_report.desc(), ReportedRun.id.desc()).limit(limit).offset(offset))
            return [report_dict(run, owner, project) for run, owner, project in s.execute(q)], total

    def get_report(self, who: Caller, run_id: str) -> dict[str, Any]:
        """One run the caller may see, with its tasks; NotFound otherwise."""
        with self.session() as s:
            row = s.execute(self._report_query().where(ReportedRun.run_id == run_id, _visible(who))).first()
            if row is None:
                raise NotFound(f"no reported run {run_id!r} of yours")
            run, owner, project = row
            tasks = s.scalars(sa.select(ReportedTask).where(ReportedTask.run_ref == run.id)
                              .order_by(ReportedTask.name))
            return {**report_dict(run, owner, project), "tasks": [task_dict(t) for t in tasks]}
