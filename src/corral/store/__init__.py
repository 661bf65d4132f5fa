"""The state store: runs, tasks, attempts, results and artifacts in a SQL database, plus a
content-addressed blob store on disk.

:class:`Store` is imported on first use (PEP 562), so that :mod:`corral.store.reader` (the
inspection commands' reader, with no SQLAlchemy) does not pay for importing it."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.store.store import Store, default_url

__all__ = ["Store", "default_url"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from corral.store import store

        return getattr(store, name)
    raise AttributeError(f"module 'corral.store' has no attribute {name!r}")
