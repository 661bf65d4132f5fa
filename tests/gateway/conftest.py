"""Fixtures of the gateway's tests: a store in a temporary directory, an app on it (no runner
unless asked), users alice and bob in project ``lab``, and an admin."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatewayStore]:
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
