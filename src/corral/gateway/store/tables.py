"""The gateway's tables (SQLAlchemy 2.x ORM). A change here needs a revision under
``migrations/versions`` and :data:`.migrate.HEAD_REVISION` moved to it (tests/gateway checks that
the migrated schema is this one)."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class JobState(enum.StrEnum):
    """A gateway job's state (docs/gateway.md draws the machine)."""

    QUEUED = "queued"
    """Accepted and charged a reservation; not yet handed to its system's executor."""
    INITIALIZING = "initializing"
    """Handed to the executor (submitted to the scheduler), not started yet."""
    RUNNING = "running"
    """Started on its system."""
    COMPLETED = "completed"
    """Ended with exit code 0."""
    FAILED = "failed"
    """Ended with a non-zero exit code, out of memory, or could not start."""
    TIMEOUT = "timeout"
    """Killed for outliving its walltime."""
    CANCELLING = "cancelling"
    """Cancel asked while initializing or running; the runner stops it."""
    CANCELLED = "cancelled"
    """Cancelled by its owner (or by someone on the system: scancel, qdel)."""
    SYSTEM_ERROR = "system_error"
    """Lost: a node failure, preemption, a job the scheduler forgot, or one the gateway could not
    follow across a restart."""


TERMINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.TIMEOUT, JobState.CANCELLED,
                                 JobState.SYSTEM_ERROR})
FAILED_JOB_STATES = frozenset({JobState.FAILED, JobState.TIMEOUT, JobState.SYSTEM_ERROR})
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.INITIALIZING, JobState.RUNNING, JobState.CANCELLING})
FOLLOWED_JOB_STATES = frozenset({JobState.INITIALIZING, JobState.RUNNING, JobState.CANCELLING})
"""States of jobs an executor has (or may have) been given: the runner follows them."""

SCOPES = ("jobs:read", "jobs:write", "admin")
ROLES = ("user", "admin")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    role: Mapped[str] = mapped_column(sa.String(20), default="user")
    created: Mapped[datetime] = mapped_column(sa.DateTime)


class Token(Base):
    """An API token: only the SHA-256 of the token is stored, never the token."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(12))
    """The first characters of the token, to tell tokens apart in listings (not enough to use one)."""
    scopes: Mapped[str] = mapped_column(sa.String(200))
    """Space-separated, from :data:`SCOPES`."""
    created: Mapped[datetime] = mapped_column(sa.DateTime)
    expires: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(default=False)


class ProjectMember(Base):
    __tablename__ = "project_members"
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    system: Mapped[str] = mapped_column(sa.String(100), default="local")
    budget_core_hours: Mapped[float] = mapped_column(sa.Float)
    reserved_core_hours: Mapped[float] = mapped_column(sa.Float, default=0.0)
    """Held by jobs that have not ended (their requested walltime's core-hours, not yet charged)."""
    charged_core_hours: Mapped[float] = mapped_column(sa.Float, default=0.0)
    max_concurrent_jobs: Mapped[int] = mapped_column(default=10)
    active_jobs: Mapped[int] = mapped_column(default=0)
    """Jobs queued, running or cancelling: kept in step with the jobs by the same transactions."""


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"), index=True)
    system: Mapped[str] = mapped_column(sa.String(100))
    title: Mapped[str] = mapped_column(sa.String(500), default="")
    command: Mapped[str] = mapped_column(sa.Text)
    nodes: Mapped[int] = mapped_column()
    cores_per_node: Mapped[int] = mapped_column()
    walltime_hours: Mapped[float] = mapped_column(sa.Float)
    queue: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    memory_gb: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    """Memory per node in GB (None: the system's default)."""
    backend_parameters: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    """Scheduler parameters of the system's allowlist (account, qos ...), as a JSON object."""
    pipeline_file: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    """A pipeline job: its file (relative to the gateway's pipelines directory); None: a command job."""
    pipeline_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    pipeline_params: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    """The pipeline's parameters, as JSON."""
    state: Mapped[str] = mapped_column(sa.String(20), index=True)
    native_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    submitted: Mapped[datetime] = mapped_column(sa.DateTime, index=True)
    started: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    ended: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    exit_code: Mapped[int | None] = mapped_column(nullable=True)
    reserved_core_hours: Mapped[float] = mapped_column(sa.Float)
    charged_core_hours: Mapped[float | None] = mapped_column(sa.Float, nullable=True)


class JobTag(Base):
    """A TES task's tags (``tesTask.tags``): one row per key of a job submitted through TES."""

    __tablename__ = "job_tags"
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id"), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(1000), default="")


class JobEvent(Base):
    """A job's state history: one row per state it entered (append-only)."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime)
    state: Mapped[str] = mapped_column(sa.String(20))
    note: Mapped[str] = mapped_column(sa.String(500), default="")


class UserQuota(Base):
    """A user's core-hour quota inside a project (no row: only the project's budget applies).
    Reserved and charged are kept in step with the project's by the same transactions."""

    __tablename__ = "user_quotas"
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    budget_core_hours: Mapped[float] = mapped_column(sa.Float)
    reserved_core_hours: Mapped[float] = mapped_column(sa.Float, default=0.0)
    charged_core_hours: Mapped[float] = mapped_column(sa.Float, default=0.0)


class AuditEntry(Base):
    """Append-only: every admin action (API or command line), who did it and to what."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime, index=True)
    actor: Mapped[str] = mapped_column(sa.String(200))
    action: Mapped[str] = mapped_column(sa.String(50))
    target: Mapped[str] = mapped_column(sa.String(200))
    detail: Mapped[str] = mapped_column(sa.Text, default="")


class LedgerEntry(Base):
    """Append-only: every reservation, charge and release of core-hours. Never updated or deleted."""

    __tablename__ = "ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(sa.DateTime)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"), index=True)
    job_id: Mapped[str | None] = mapped_column(sa.ForeignKey("jobs.id"), nullable=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"), nullable=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    """reserve, charge or release."""
    core_hours: Mapped[float] = mapped_column(sa.Float)
    note: Mapped[str] = mapped_column(sa.String(500), default="")


class ReportedRun(Base):
    """A pipeline run reported by ``corral run --report-to`` (metrics ingestion): run anywhere, owned
    by the reporting token's user. ``state`` is a :class:`corral.states.RunState` value."""

    __tablename__ = "reported_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("projects.id"), nullable=True, index=True)
    pipeline: Mapped[str] = mapped_column(sa.String(200))
    executor: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(20))
    counts: Mapped[str] = mapped_column(sa.Text, default="{}")
    """Tasks by :class:`corral.states.TaskState`, as JSON."""
    started: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    ended: Mapped[datetime | None] = mapped_column(sa.DateTime, nullable=True)
    first_report: Mapped[datetime] = mapped_column(sa.DateTime, index=True)
    last_report: Mapped[datetime] = mapped_column(sa.DateTime)


class ReportedTask(Base):
    """One task of a reported run with its metrics (its last attempt's): one row per task name."""

    __tablename__ = "reported_tasks"
    run_ref: Mapped[int] = mapped_column(sa.ForeignKey("reported_runs.id"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(20))
    wall: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    cpu: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    peak_memory: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    host: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    exit_code: Mapped[int | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
