"""Fixtures of the core tests: a working directory per test, pipeline files, store queries.

Tasks defined at module level in these test modules are sent to the local pool by value (the
pool's forkserver cannot import test modules), see :func:`_pickle_test_module_by_value`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

import corral
from corral.api import RunResult
from corral.model import Pipeline
from corral.store import Store

RIG_ENV = Path("/run/corral-rig/env")


@pytest.fixture(autouse=True)
def _pickle_test_module_by_value(request: pytest.FixtureRequest) -> None:
    module = getattr(request, "module", None)
    if module is not None and module.__name__ in sys.modules:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture
def wd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, also the current directory of the test."""
    path = tmp_path / "wd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


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
        return {t["name"]: t for t in self.store.tasks(run_id)}

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


@pytest.fixture
def helper(wd: Path) -> Iterator[Helper]:
    h = Helper(wd)
    yield h
    h.close()


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


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
