"""A new store is created from the schema and stamped at head; that must equal what the
Alembic migrations build, or existing stores would drift from new ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import corral.store.store as store_mod
from corral.store import Store


def _describe(engine: sa.Engine) -> dict[str, Any]:
    insp = sa.inspect(engine)
    return {
        t: (
            sorted((c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)),
            sorted(tuple(x["column_names"]) for x in insp.get_indexes(t)),
            sorted(tuple(fk["constrained_columns"]) for fk in insp.get_foreign_keys(t)),
        )
        for t in insp.get_table_names()
    }


def test_fresh_schema_equals_migrated_schema(tmp_path: Path) -> None:
    fresh = Store.open(tmp_path / "fresh")
    migrated = sa.create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_mod.__file__).parent / "migrations"))
    with migrated.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert _describe(fresh.engine) == _describe(migrated)
    with fresh.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert version == store_mod.HEAD_REVISION
