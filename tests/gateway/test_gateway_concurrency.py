"""Submissions at the edge of a budget, at the same time from many threads, never overspend it: on
SQLite and on the rig's real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from corral.gateway.store import GatewayStore, JobRequest, OverLimit, default_url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayStore]:
    url = default_url(tmp_path) if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = GatewayStore(url)
    yield s
    s.close()


def test_50_concurrent_submissions_never_overspend(any_store: GatewayStore) -> None:
    store = any_store
    store.create_project("lab", 100.0, members=["alice"], max_concurrent_jobs=1000)
    who = store.authenticate(store.create_token("alice"))

    def submit(i: int) -> bool:
        try:
            store.submit(who, JobRequest(f"echo {i}", nodes=1, cores_per_node=10, walltime_hours=1))
            return True
        except OverLimit:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(submit, range(50)))
    assert sum(accepted) == 10
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 100 and project["available_core_hours"] == 0
    assert project["active_jobs"] == 10
    assert [e["kind"] for e in store.ledger("lab")] == ["reserve"] * 10
    assert store.list_jobs(None, limit=100, offset=0)[1] == 10


def test_concurrency_limit_under_contention(any_store: GatewayStore) -> None:
    store = any_store
    store.create_project("lab", 10_000.0, members=["alice"], max_concurrent_jobs=5)
    who = store.authenticate(store.create_token("alice"))

    def submit(i: int) -> bool:
        try:
            store.submit(who, JobRequest(f"echo {i}", walltime_hours=0.1))
            return True
        except OverLimit:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sum(pool.map(submit, range(30))) == 5


def test_concurrent_submissions_at_the_edge_of_a_user_quota(any_store: GatewayStore) -> None:
    store = any_store
    store.create_project("lab", 1000.0, members=["alice"], max_concurrent_jobs=1000)
    store.set_quota("root", "lab", "alice", 30.0)
    who = store.authenticate(store.create_token("alice"))

    def submit(i: int) -> bool:
        try:
            store.submit(who, JobRequest(f"echo {i}", cores_per_node=10, walltime_hours=1))
            return True
        except OverLimit:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sum(pool.map(submit, range(50))) == 3
    [quota] = store.quotas("lab")
    assert quota["reserved_core_hours"] == 30 and quota["available_core_hours"] == 0
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 30 and project["active_jobs"] == 3  # refusals rolled back
