"""The schema revision this Corral writes, in a module of its own: readers that must not import
SQLAlchemy (:mod:`corral.store.reader`) check a database against it."""

HEAD_REVISION = "0002"
"""The newest Alembic revision under ``store/migrations``; a database stamped with it is current."""
