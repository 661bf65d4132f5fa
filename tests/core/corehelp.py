"""Helpers of the core tests: pipeline files, runs in one working directory, store queries,
the test rig's settings, and polling."""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import corral
from corral.api import RunResult
from corral.model import Pipeline
from corral.store import Store

RIG_ENV = Path("/run/corral-rig/env")


class Helper:
    """Writes pipeline files, runs them in one working directory, queries the store."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._store: Store | None = None

    # ------------------------------------------------------------------ pipelines

    def write(self, source: str, name: str | None = None) -> Path:
        """Write a pipeline file (dedented) next to the working directory; returns its path."""
        name = name or f"pipe_{uuid.uuid4().hex[:8]}.py"
        path = self.workdir.parent / name
        path.write_text(textwrap.dedent(source))
        return path

    def load(self, source: str, pipeline: str | None = None, name: str | None = None
             ) -> Pipeline[Any, Any]:
        """Write ``source`` to a new file and load its pipeline."""
        return corral.load_pipeline(self.write(source, name), pipeline)

    def run(self, pipe: Pipeline[Any, Any], params: dict[str, Any] | None = None,
            **config: Any) -> RunResult:
        config.setdefault("jobs", 2)
        config.setdefault("workdir", self.workdir)
        return corral.run(pipe, params or {}, **config)

    # ------------------------------------------------------------------ store

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.workdir)
        return self._store

    def tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        return {t["name"]: dict(t) for t in self.store.tasks(run_id)}

    def states(self, run_id: str) -> dict[str, str]:
        return {name: t["state"] for name, t in self.tasks(run_id).items()}

    def attempts(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Attempts of one run, or of every run of the store, with their task's name."""
        _ = self.store  # creates the database if no run did
        with sqlite3.connect(self.workdir / ".corral" / "state.db") as db:
            db.row_factory = sqlite3.Row
            q = ("SELECT a.*, t.name AS task FROM attempts a JOIN tasks t ON t.id = a.task_id"
                 + (" WHERE a.run_id = ?" if run_id else "") + " ORDER BY a.submitted_at")
            rows = [dict(r) for r in db.execute(q, (run_id,) if run_id else ())]
        for row in rows:
            for col in ("resources", "extra"):
                if isinstance(row[col], str):
                    row[col] = json.loads(row[col])
        return rows

    def ran(self, run_id: str) -> list[str]:
        """Sorted names of the tasks that got an attempt in ``run_id``."""
        return sorted({a["task"] for a in self.attempts(run_id)})

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def rig_env(name: str) -> str | None:
    """A variable from the environment, or from the test rig's env file."""
    if os.environ.get(name):
        return os.environ[name]
    try:
        for line in RIG_ENV.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == name and value.strip():
                return value.strip()
    except OSError:
        return None
    return None


def need(condition: bool, reason: str) -> None:
    """Skip unless the rig is required (CORRAL_REQUIRE_CLUSTERS=1), in which case fail."""
    if condition:
        return
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{reason} (CORRAL_REQUIRE_CLUSTERS=1)")
    pytest.skip(reason)


def pg_url() -> str:
    """The rig's PostgreSQL URL (skips, or fails with CORRAL_REQUIRE_CLUSTERS=1, without it)."""
    url = rig_env("CORRAL_TEST_PG_URL")
    need(bool(url), "CORRAL_TEST_PG_URL is not set (scripts/rig/start-postgres.sh)")
    assert url is not None
    return url


@contextmanager
def pg_schema(url: str, prefix: str) -> Iterator[str]:
    """A URL of ``url``'s server whose search_path is a new, empty schema (dropped afterwards)."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, pool_pre_ping=True)  # the server may have restarted since
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        need(False, f"PostgreSQL at {url} is not reachable: {str(exc).splitlines()[0]}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
