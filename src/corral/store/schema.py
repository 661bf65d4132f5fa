"""Tables of the state store. Changes to them go with an Alembic revision in ``migrations/``.

Every row that a multi-user server must check carries ``owner`` (runs) or reaches a run through
``run_id``; results and artifacts are shared by key/digest, which is what makes cross-run and
cross-pipeline caching work.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from corral.states import TaskState

metadata = MetaData()
RAN = text(f"state = '{TaskState.SUCCEEDED.value}'")
"""A task row that ran and succeeded: the condition of the partial index ``ix_tasks_key``, as
a constant that the queries using the index repeat (a bound parameter would not match it)."""

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("identity", String(64), nullable=False, index=True),
    Column("pipeline", String(200), nullable=False),
    Column("source", Text, nullable=False),
    # Path of the pipeline file (or module:function).
    Column("params", JSON, nullable=False),
    Column("workdir", Text, nullable=False),
    Column("executor", JSON, nullable=False),
    Column("state", String(20), nullable=False, index=True),
    Column("control", String(20), nullable=False, default="none"),
    Column("owner", String(100), nullable=False, default=""),
    Column("project", String(100), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("engine_host", String(200)),
    Column("engine_pid", Integer),
    Column("heartbeat_at", Float),
    Column("error", Text),
    Column("environment", JSON),
    Column("options", JSON),
    Column("n_tasks", Integer, nullable=False, default=0),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("name", String(400), nullable=False),
    Column("grp", String(300), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("key", String(64), nullable=False),
    Column("state", String(20), nullable=False),
    Column("cached", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("code_hash", String(80)),
    Column("params", JSON),
    # Short, JSON-friendly form of the arguments (for `corral why` and reports).
    Column("inputs", JSON),
    # Input files with their digests: {path: digest}.
    Column("upstream", JSON),
    # Names and keys of upstream tasks: {name: key}.
    Column("resources", JSON),
    Column("error", Text),
    Column("started_at", Float),
    Column("finished_at", Float),
    UniqueConstraint("run_id", "name", name="uq_task_run_name"),
    Index("ix_tasks_run_state", "run_id", "state"),
    Index("ix_tasks_run_idx", "run_id", "idx"),
    Index("ix_tasks_key", "key", sqlite_where=RAN),
    # only the rows that ran: a task's producer is looked up by key (lineage); the cached rows
    # of a re-checked run, a row per task, are not indexed by their random keys. PostgreSQL's
    # form of the condition is added where a database is created on it (see
    # :func:`partial_on_postgresql`): naming it here would import PostgreSQL's dialect (≈ 20 ms)
    # into every command that opens a store.
)


def partial_on_postgresql() -> None:
    """Give the partial index ``ix_tasks_key`` its condition on PostgreSQL too (before
    ``create_all`` on a PostgreSQL database; idempotent)."""
    for index in tasks.indexes:
        if index.name == "ix_tasks_key":
            index.dialect_kwargs["postgresql_where"] = RAN


task_summary = Table(
    "task_summary",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(400), primary_key=True),
    # The group's name: a map's ``grp``, or a task's own name when it is in no map.
    Column("grp", String(300), nullable=False),
    Column("n", Integer, nullable=False),
    Column("first", Integer, nullable=False),
    Column("last", Integer, nullable=False),
    Column("tries", Integer, nullable=False),
    Column("states", JSON, nullable=False),
    # {state: how many tasks of the group}.
    Column("wall", Float),
    Column("cpu", Float),
    Column("peak_rss", BigInteger),
    Column("hosts", Integer, nullable=False),
    Column("host", String(200)),
)
"""An ended run's tasks by group (:func:`corral.store.queries.task_groups`), written with the
run's final state and dropped when the run starts again, so that ``corral status`` of a
million-task run reads a few rows, not a million."""

attempts = Table(
    "attempts",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False),
    Column("run_id", String(40), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("state", String(20), nullable=False),
    Column("executor", String(40), nullable=False),
    Column("native_id", String(100)),
    Column("host", String(200)),
    Column("workdir", Text),
    Column("resources", JSON),
    Column("submitted_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("wall", Float),
    Column("cpu_user", Float),
    Column("cpu_system", Float),
    Column("peak_rss", BigInteger),
    Column("read_bytes", BigInteger),
    Column("write_bytes", BigInteger),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("extra", JSON),
    # Scheduler accounting and anything executor-specific (e.g. sacct fields).
    Index("ix_attempts_task", "task_id"),
)

results = Table(
    "results",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("task_name", String(400), nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("attempt_id", String(80)),
    Column("created_at", Float, nullable=False),
    Column("value", LargeBinary),
    # Pickled value when small; otherwise ``digest`` names a CAS object.
    Column("digest", String(64)),
    Column("size", BigInteger, nullable=False, default=0),
    Column("outputs", JSON),
    # Output files: {path: digest} (copies kept in the CAS).
    Column("last_used", Float),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("digest", String(64), nullable=False, index=True),
    Column("path", Text),
    # Absolute path of an output file; NULL for a stored value.
    Column("kind", String(10), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("run_id", String(40), nullable=False, index=True),
    Column("task_id", Integer, ForeignKey("tasks.id", ondelete="CASCADE")),
    Column("attempt_id", String(80)),
    Column("task_key", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_artifacts_path", "path"),
)

edges = Table(
    "edges",
    metadata,
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("parent", Integer, primary_key=True),
    Column("child", Integer, primary_key=True),
)
"""Graph edges by task index within a run."""
