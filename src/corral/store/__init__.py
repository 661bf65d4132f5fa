"""The state store: runs, tasks, attempts, results and artifacts in a SQL database, plus a
content-addressed blob store on disk."""

from corral.store.store import Store, default_url

__all__ = ["Store", "default_url"]
