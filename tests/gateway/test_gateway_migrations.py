"""The gateway's tables under Alembic, on SQLite and the rig's PostgreSQL: a new database is created
at the head revision; a database of a gateway from before migrations keeps its jobs and is
upgraded; the migrated schema is exactly the tables of corral.gateway.store.tables."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from corral.gateway.store import GatewayStore, JobRequest, default_url
from corral.gateway.store.migrate import HEAD_REVISION, MIGRATIONS, VERSION_TABLE, current_version
from corral.gateway.store.tables import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return default_url(tmp_path) if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def _old_gateway_database(url: str) -> None:
    """The tables as a gateway from before migrations created them, with a user, a project, a job."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "g0001")
        conn.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        conn.execute(sa.text("INSERT INTO users (id, name, role, created) VALUES (1, 'alice', 'user', '2026-01-01')"))
        conn.execute(sa.text(
            "INSERT INTO projects (id, name, system, budget_core_hours, reserved_core_hours, charged_core_hours,"
            " max_concurrent_jobs, active_jobs) VALUES (1, 'lab', 'local', 100, 0, 0, 10, 0)"))
        conn.execute(sa.text("INSERT INTO project_members (project_id, user_id) VALUES (1, 1)"))
        conn.execute(sa.text(
            "INSERT INTO jobs (id, owner_id, project_id, system, title, command, nodes, cores_per_node,"
            " walltime_hours, state, submitted, reserved_core_hours) VALUES ('old-job', 1, 1, 'local', 'old',"
            " 'true', 1, 1, 1.0, 'completed', '2026-01-01', 1.0)"))
    engine.dispose()


def _differences(conn: sa.Connection) -> list[object]:
    """What Alembic finds different between the database and the tables of the code."""
    diffs: list[object] = compare_metadata(MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}),
                                           Base.metadata)
    return diffs


def test_new_database_is_created_at_head(url: str) -> None:
    store = GatewayStore(url)
    try:
        assert current_version(store.engine) == HEAD_REVISION
        with store.engine.connect() as conn:
            assert _differences(conn) == []
    finally:
        store.close()


def test_database_from_before_migrations_is_upgraded_and_keeps_its_jobs(url: str) -> None:
    _old_gateway_database(url)
    store = GatewayStore(url)
    try:
        assert current_version(store.engine) == HEAD_REVISION
        with store.engine.connect() as conn:  # the migrations build exactly the current tables
            assert _differences(conn) == []
        who = store.authenticate(store.create_token("alice"))
        old = store.get_job(who, "old-job")
        assert old["state"] == "completed" and old["queue"] is None
        new = store.submit(who, JobRequest("true", queue="debug"))
        assert new["queue"] == "debug" and [e["state"] for e in store.history(who, new["id"])] == ["queued"]
    finally:
        store.close()
    GatewayStore(url).close()  # at head already: opens without migrating again
