"""Creating and migrating the store's schema, once, however many engines start at the same time.

The fast path is one query: an engine that finds the schema at :data:`HEAD_REVISION` touches
nothing else (no inspector, no Alembic import). Otherwise the schema is created or migrated
under a lock that every engine of the same database honours — an ``fcntl`` lock on a file next
to a SQLite database, a transaction-scoped ``pg_advisory_xact_lock`` on PostgreSQL — and checked
again under the lock, so the engines that waited find it done.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from corral.errors import StoreError
from corral.store import schema as t
from corral.store.version import HEAD_REVISION as HEAD_REVISION

MIGRATIONS = Path(__file__).parent / "migrations"
PG_LOCK_KEY = 0x436F7272616C  # "Corral": the advisory lock of schema creation and migration
_VERSION = sa.Table("alembic_version", sa.MetaData(),
                    sa.Column("version_num", sa.String(32), primary_key=True))


def ensure_schema(engine: Engine, where: str) -> None:
    """Bring the database of ``engine`` to :data:`HEAD_REVISION` (``where`` names it in errors)."""
    if current_version(engine) == HEAD_REVISION:
        return
    with _file_lock(engine):
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
            _upgrade(conn, where)


def current_version(engine: Engine) -> str | None:
    """The schema revision stamped in the database; None when it has none (or no tables)."""
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.select(_VERSION.c.version_num)).scalar()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return None  # no such table (or no server: the locked path says so)
    return None if value is None else str(value)


def _upgrade(conn: Connection, where: str) -> None:
    insp = sa.inspect(conn)
    current = None
    if insp.has_table("alembic_version"):
        current = conn.execute(sa.select(_VERSION.c.version_num)).scalar()
    if current == HEAD_REVISION:
        return  # another engine did it while this one waited for the lock
    if current is None and not insp.has_table("runs"):
        _create_fresh(conn)
        return
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(
            f"the state store {where} has schema version {current}, newer than this Corral "
            f"knows (its newest is {HEAD_REVISION}); upgrade Corral to use it, or use another --db")
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def _create_fresh(conn: Connection) -> None:
    """A new database gets the current schema and is stamped at head, as Alembic's docs
    advise ("building an up-to-date database from scratch"); existing ones are migrated."""
    if conn.dialect.name == "postgresql":
        t.partial_on_postgresql()
    t.metadata.create_all(conn)
    _VERSION.create(conn)
    conn.execute(_VERSION.insert().values(version_num=HEAD_REVISION))


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.schema-lock`` for a SQLite file (nothing otherwise):
    SQLite's DDL is not under one lock from the first check to the stamp, this file is."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        yield
        return
    try:
        fd = os.open(f"{database}.schema-lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the state store {database}: its lock file {database}.schema-lock "
                         f"cannot be created ({exc.strerror}); check the --db URL and that the "
                         "folder exists and is writable") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
