"""The token cache and the fast status read, on a real uvicorn: a token revoked through the gateway
is refused at once though its user was cached; one revoked by another process (the CLI) within
the cache's few seconds; an expired token at its expiry; the fast ``GET /api/v1/jobs/{id}`` gives
what the store's own read gives, and the same 404s."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from corral.gateway.app import create_app
from corral.gateway.security import TokenCache
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore, JobRequest, Principal, Unauthorized, default_url
from corral.gateway.store.reads import read_job


@dataclass
class Served:
    app: FastAPI
    url: str
    store: GatewayStore
    alice: str
    root: str

    def get(self, path: str, token: str) -> httpx.Response:
        return httpx.get(self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def served(tmp_path: Path, store: GatewayStore,
           serve: Callable[[Any], AbstractContextManager[str]]) -> Iterator[Served]:
    store.create_project("lab", 100.0, members=["alice", "bob"])
    store.create_project("other", 100.0, members=["carol"])
    alice, root = store.create_token("alice"), store.create_token("root", admin=True)
    app = create_app(Settings(workdir=tmp_path, run_jobs=False, rate_limit=None), store=store)
    with serve(app) as url:
        yield Served(app, url, store, alice, root)


def _job(s: Served) -> str:
    job_id: str = s.store.submit(s.store.authenticate(s.alice), JobRequest("echo hi", title="t"))["id"]
    return job_id


def test_a_token_revoked_through_the_api_is_refused_at_once(served: Served) -> None:
    job = _job(served)
    assert served.get(f"/api/v1/jobs/{job}", served.alice).status_code == 200  # alice's token is cached now
    r = httpx.delete(f"{served.url}/api/v1/admin/tokens/{served.alice[:10]}",
                     headers={"Authorization": f"Bearer {served.root}"}, timeout=10)
    assert r.json() == {"revoked": 1}
    r = served.get(f"/api/v1/jobs/{job}", served.alice)
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_a_token_revoked_by_another_process_is_refused_within_the_cache_time(served: Served, tmp_path: Path) -> None:
    served.app.state.token_cache.ttl = 2.0
    job = _job(served)
    cli = GatewayStore(default_url(tmp_path))  # as `corral gateway token revoke` does, in its own process
    try:
        cached = time.monotonic()
        assert served.get(f"/api/v1/jobs/{job}", served.alice).status_code == 200
        assert cli.revoke_token(served.alice) == 1
    finally:
        cli.close()
    assert served.get(f"/api/v1/jobs/{job}", served.alice).status_code == 200  # the documented bound: still cached
    time.sleep(max(0.0, cached + 2.1 - time.monotonic()))
    r = served.get(f"/api/v1/jobs/{job}", served.alice)
    assert r.status_code == 401 and r.json()["detail"] == "token revoked"


def test_a_cached_token_is_refused_at_its_expiry(served: Served) -> None:
    served.app.state.token_cache.ttl = 60.0
    job = _job(served)
    created = time.monotonic()
    token = served.store.create_token("alice", expires_days=2.0 / 86400)
    assert served.get(f"/api/v1/jobs/{job}", token).status_code == 200
    time.sleep(max(0.0, created + 2.1 - time.monotonic()))
    r = served.get(f"/api/v1/jobs/{job}", token)
    assert r.status_code == 401 and r.json()["detail"] == "token expired"


def test_the_fast_status_read_is_the_stores_read(served: Served) -> None:
    store = served.store
    job = _job(served)
    bob, carol = store.create_token("bob", ["jobs:read"]), store.create_token("carol")
    mine = served.get(f"/api/v1/jobs/{job}", served.alice).json()
    assert mine == store.get_job(store.authenticate(served.alice), job)
    assert mine["state"] == "queued" and mine["owner"] == "alice" and mine["project_name"] == "lab"
    assert served.get(f"/api/v1/jobs/{job}", bob).json()["id"] == job  # a member of the job's project
    for token, job_id in ((carol, job), (served.alice, "no-such-job")):
        r = served.get(f"/api/v1/jobs/{job_id}", token)
        assert r.status_code == 404 and r.json()["detail"] == f"no job {job_id}"
    store.cancel(store.authenticate(served.alice), job)
    ended = served.get(f"/api/v1/jobs/{job}", served.alice).json()
    assert ended["state"] == "cancelled" and ended["ended"] is not None
    assert ended == read_job(store, store.authenticate(served.alice), job)


def test_a_lookup_overtaken_by_a_revocation_is_not_kept() -> None:
    cache = TokenCache(ttl=60.0)
    who = Principal(1, "alice", "user", frozenset({"jobs:read"}))
    loads: list[int] = []

    def load_during_revocation() -> tuple[Principal, None]:
        loads.append(1)
        cache.clear()  # a revocation commits while this lookup is under way
        return who, None

    assert cache.principal("h", load_during_revocation) == who
    assert cache.principal("h", load_during_revocation) == who
    assert len(loads) == 2  # the first lookup's answer was not kept

    def refuse() -> tuple[Principal, None]:
        raise Unauthorized("token revoked")

    with pytest.raises(Unauthorized, match="token revoked"):
        cache.principal("h", refuse)


def test_a_change_of_role_clears_the_cache(tmp_path: Path) -> None:
    """Making a user admin (or changing any role) forgets the cached callers, so a token's
    cached role is never older than the change; an unchanged role leaves them."""
    store = GatewayStore(default_url(tmp_path))
    try:
        cache = TokenCache(ttl=60.0)
        store.on_access_change.append(cache.clear)
        token = store.create_token("carol")
        key = "k"
        first = cache.principal(key, lambda: (store.authenticate(token), None))
        assert first.role == "user"
        store.ensure_user("carol")  # no change of role: the cached caller stays
        assert cache.principal(key, _no_lookup) is first
        store.create_token("carol", admin=True)  # carol becomes an admin
        again = cache.principal(key, lambda: (store.authenticate(token), None))
        assert again.role == "admin"
    finally:
        store.close()


def _no_lookup() -> tuple[Principal, None]:
    raise AssertionError("the cached caller was forgotten")
