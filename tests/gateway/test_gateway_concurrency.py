"""Submissions at the edge of a budget, at the same time from many threads, never overspend it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from corral.gateway.store import GatewayStore, JobRequest, OverLimit


def test_concurrent_submissions_never_overspend(store: GatewayStore) -> None:
    store.create_project("lab", 100.0, members=["alice"], max_concurrent_jobs=1000)
    who = store.authenticate(store.create_token("alice"))

    def submit(i: int) -> bool:
        try:
            store.submit(who, JobRequest(f"echo {i}", nodes=1, cores_per_node=10, walltime_hours=1))
            return True
        except OverLimit:
            return False

    with ThreadPoolExecutor(max_workers=16) as pool:
        accepted = list(pool.map(submit, range(40)))
    assert sum(accepted) == 10
    [project] = store.list_projects(who)
    assert project["reserved_core_hours"] == 100 and project["available_core_hours"] == 0
    assert project["active_jobs"] == 10
    assert [e["kind"] for e in store.ledger("lab")] == ["reserve"] * 10


def test_concurrency_limit_under_contention(store: GatewayStore) -> None:
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
