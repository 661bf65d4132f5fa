"""Alembic environment of the gateway's tables: migrations run on the connection the gateway's
store hands over; the revision is kept in ``gateway_alembic_version`` (not ``alembic_version``),
so the gateway's tables and the run store's may share one database."""

from __future__ import annotations

from alembic import context

from corral.gateway.store.tables import Base

VERSION_TABLE = "gateway_alembic_version"

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when run by the alembic CLI
    from sqlalchemy import create_engine

    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "sqlite://")
    connection = engine.connect()
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
