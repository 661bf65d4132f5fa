"""Fixtures of the gateway's tests: a store in a temporary directory, an app on it (no runner
unless asked), users alice and bob in project ``lab``, and an admin; ``server``: a real uvicorn on a
free loopback port with the runner in the background (its URL)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from corral.gateway.app import create_app
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore, default_url


@dataclass
class Gateway:
    store: GatewayStore
    client: TestClient
    alice: str
    bob: str
    admin: str

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


CLUSTER_PROBES = {"slurm": ["sinfo", "-h"], "sge": ["qstat", "-f"]}


def require_cluster(kind: str) -> None:
    """Skip unless the rig's real ``kind`` cluster answers (fail instead with CORRAL_REQUIRE_CLUSTERS=1)."""
    probe = CLUSTER_PROBES[kind]
    reason = None
    if shutil.which(probe[0]) is None:
        reason = f"{probe[0]} is not on PATH"
    else:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=15, check=False)  # noqa: S603
        if proc.returncode != 0:
            reason = f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}"
    if reason is not None:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"{kind} cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
        pytest.skip(f"{kind} cluster not available: {reason}")



GENEROUS_LOCAL = """
[systems.local]
executor = "local"
max_nodes = 64
max_cores_per_node = 64
max_walltime_hours = 10000
"""
"""The ``local`` HPC system with limits wide enough for the accounting tests' large jobs."""


@pytest.fixture
def systems_toml() -> str:
    """The ``gateway.toml`` of the tests' gateway (a test module overrides it for other systems)."""
    return GENEROUS_LOCAL


@pytest.fixture
def store(tmp_path: Path, systems_toml: str) -> Iterator[GatewayStore]:
    (tmp_path / "gateway.toml").write_text(systems_toml)
    s = GatewayStore(default_url(tmp_path))
    yield s
    s.close()


@pytest.fixture
def gateway(tmp_path: Path, store: GatewayStore) -> Iterator[Gateway]:
    store.create_project("lab", 100.0, members=["alice", "bob"], max_concurrent_jobs=3)
    tokens = store.create_token("alice"), store.create_token("bob"), store.create_token("root", admin=True)
    app = create_app(Settings(workdir=tmp_path, run_jobs=False), store=store)
    with TestClient(app) as client:
        yield Gateway(store, client, *tokens)


@pytest.fixture
def server(tmp_path: Path, store: GatewayStore,
           serve: Callable[[Any], AbstractContextManager[str]]) -> Iterator[str]:
    with serve(create_app(Settings(workdir=tmp_path, poll_seconds=0.05), store=store)) as url:
        yield url
