"""Creating and migrating the gateway's tables (Alembic, ``migrations/`` next to this module).

As the run store does (:mod:`corral.store.migrate`): a database already at :data:`HEAD_REVISION`
costs one query and no Alembic import; otherwise, under a lock every gateway process of the same
database honours (an ``fcntl`` lock next to a SQLite file, ``pg_advisory_xact_lock`` on
PostgreSQL), a new database gets the current tables stamped at head, a database of a gateway from
before migrations (tables, no revision) is stamped at the first revision and upgraded, and any
other is upgraded. The revision lives in ``gateway_alembic_version``, apart from the run store's.
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

from .tables import Base

HEAD_REVISION = "g0006"
"""The newest revision under ``migrations/versions``; a database stamped with it is current."""
FIRST_REVISION = "g0001"
"""The tables as the gateway created them before it had migrations."""
MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "gateway_alembic_version"
PG_LOCK_KEY = 0x436F7247570A  # the gateway's schema lock ("CorGW")
_VERSION = sa.Table(VERSION_TABLE, sa.MetaData(), sa.Column("version_num", sa.String(32), primary_key=True))


def ensure_schema(engine: Engine) -> None:
    """Bring the gateway's tables in ``engine``'s database to :data:`HEAD_REVISION`."""
    if current_version(engine) == HEAD_REVISION:
        return
    with _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        _upgrade(conn, engine.url.render_as_string(hide_password=True))


def current_version(engine: Engine) -> str | None:
    """The revision stamped in the database; None without one."""
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.select(_VERSION.c.version_num)).scalar()
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return None
    return None if value is None else str(value)


def _upgrade(conn: Connection, where: str) -> None:
    insp = sa.inspect(conn)
    current = conn.execute(sa.select(_VERSION.c.version_num)).scalar() if insp.has_table(VERSION_TABLE) else None
    if current == HEAD_REVISION:
        return  # another process did it while this one waited for the lock
    if current is None and not insp.has_table("jobs"):
        Base.metadata.create_all(conn)
        _VERSION.create(conn, checkfirst=True)
        conn.execute(_VERSION.insert().values(version_num=HEAD_REVISION))
        return
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
    if current is not None and current not in known:
        raise StoreError(f"the gateway's database {where} has schema version {current}, newer than this "
                         f"Corral knows (its newest is {HEAD_REVISION}); upgrade Corral, or use another --db")
    cfg.attributes["connection"] = conn
    if current is None:  # tables of a gateway from before migrations
        command.stamp(cfg, FIRST_REVISION)
    command.upgrade(cfg, "head")


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on ``<database>.schema-lock`` for a SQLite file (nothing otherwise)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    try:
        fd = os.open(f"{database}.schema-lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot open the gateway's database {database}: its lock file cannot be created "
                         f"({exc.strerror}); check --db and that the folder is writable") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
