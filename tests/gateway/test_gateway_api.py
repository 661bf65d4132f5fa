"""The gateway's REST API through the ASGI app (no server, no runner: jobs stay queued)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from corral.gateway.store import GatewayStore, hash_token

from .conftest import Gateway

JOB = {"command": "echo hi", "nodes": 1, "cores_per_node": 2, "walltime_hours": 1.5, "title": "t"}


def test_token_stored_only_as_its_hash(tmp_path: Path, store: GatewayStore) -> None:
    token = store.create_token("alice")
    assert token.startswith("crl_") and len(token) > 40
    raw = (tmp_path / ".corral" / "gateway.db").read_bytes()
    assert token.encode() not in raw
    with sqlite3.connect(tmp_path / ".corral" / "gateway.db") as db:
        hashes = [row[0] for row in db.execute("select token_hash from tokens")]
    assert hashes == [hash_token(token)]
    assert store.authenticate(token).name == "alice"


def test_no_or_bad_token_is_401(gateway: Gateway) -> None:
    assert gateway.client.get("/api/v1/jobs").status_code == 401
    r = gateway.client.get("/api/v1/jobs", headers=gateway.auth("crl_not-a-token"))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


def test_revoked_and_expired_tokens_are_refused(gateway: Gateway) -> None:
    assert gateway.client.get("/api/v1/jobs", headers=gateway.auth(gateway.alice)).status_code == 200
    assert gateway.store.revoke_token(gateway.alice) == 1
    r = gateway.client.get("/api/v1/jobs", headers=gateway.auth(gateway.alice))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    expired = gateway.store.create_token("alice", expires_days=-1)
    r = gateway.client.get("/api/v1/jobs", headers=gateway.auth(expired))
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_scopes(gateway: Gateway) -> None:
    reader = gateway.store.create_token("alice", ["jobs:read"])
    r = gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(reader))
    assert r.status_code == 403 and "jobs:write" in r.json()["detail"]
    assert gateway.client.get("/api/v1/jobs", headers=gateway.auth(reader)).status_code == 200
    writer = gateway.store.create_token("alice", ["jobs:write"])
    assert gateway.client.get("/api/v1/jobs", headers=gateway.auth(writer)).status_code == 403
    assert gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(writer)).status_code == 201


def test_submit_get_and_list_own_jobs(gateway: Gateway) -> None:
    r = gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(gateway.alice))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "queued" and job["owner"] == "alice" and job["project_name"] == "lab"
    assert job["core_hours_reserved"] == 3.0
    got = gateway.client.get(f"/api/v1/jobs/{job['id']}", headers=gateway.auth(gateway.alice)).json()
    assert got["id"] == job["id"] and got["command"] == "echo hi"
    page = gateway.client.get("/api/v1/jobs", headers=gateway.auth(gateway.alice)).json()
    assert page["total"] == 1 and [j["id"] for j in page["items"]] == [job["id"]]
    assert gateway.client.get("/api/v1/jobs", headers=gateway.auth(gateway.bob)).json()["total"] == 0


def test_paging(gateway: Gateway) -> None:
    ids = [gateway.client.post("/api/v1/jobs", json={"command": f"echo {i}", "walltime_hours": 0.1},
                               headers=gateway.auth(gateway.alice)).json()["id"] for i in range(3)]
    seen = []
    for offset in range(3):
        page = gateway.client.get(f"/api/v1/jobs?limit=1&offset={offset}", headers=gateway.auth(gateway.alice))
        assert page.json()["total"] == 3
        seen += [j["id"] for j in page.json()["items"]]
    assert sorted(seen) == sorted(ids)
    assert gateway.client.get("/api/v1/jobs?limit=0", headers=gateway.auth(gateway.alice)).status_code == 422


def test_another_users_job_is_404(gateway: Gateway) -> None:
    gateway.store.create_project("alone", 10.0, members=["alice"])  # bob shares "lab": he may read its jobs
    job = gateway.client.post("/api/v1/jobs", json={**JOB, "project": "alone"},
                              headers=gateway.auth(gateway.alice)).json()
    for method in ("GET", "DELETE"):
        r = gateway.client.request(method, f"/api/v1/jobs/{job['id']}", headers=gateway.auth(gateway.bob))
        assert r.status_code == 404, method
    missing = gateway.client.get("/api/v1/jobs/nope", headers=gateway.auth(gateway.bob))
    assert missing.status_code == 404 and missing.json() == {"detail": "no job nope"}
    r = gateway.client.get(f"/api/v1/jobs/{job['id']}", headers=gateway.auth(gateway.alice))
    assert r.json()["state"] == "queued"  # bob's cancel did nothing


def test_admin_endpoint_needs_admin(gateway: Gateway) -> None:
    gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(gateway.alice))
    gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(gateway.bob))
    assert gateway.client.get("/api/v1/admin/jobs/", headers=gateway.auth(gateway.alice)).status_code == 403
    r = gateway.client.get("/api/v1/admin/jobs/", headers=gateway.auth(gateway.admin))
    assert r.status_code == 200 and r.json()["total"] == 2
    fields = {"id", "job_id", "owner", "project", "project_hpc", "project_name", "init_date", "end_date",
              "runtime", "stage", "terminal_stage", "failed", "title"}
    assert all(fields <= set(job) for job in r.json()["items"])
    r = gateway.client.get("/api/v1/admin/jobs/bob/", headers=gateway.auth(gateway.admin))
    assert [j["owner"] for j in r.json()["items"]] == ["bob"]
    # the admin scope without the admin role is no use (and cannot be granted)
    no_admin_scope = gateway.store.create_token("root", ["jobs:read"])
    assert gateway.client.get("/api/v1/admin/jobs/", headers=gateway.auth(no_admin_scope)).status_code == 403


def test_admin_scope_needs_admin_role(store: GatewayStore) -> None:
    import pytest

    from corral.gateway.store import Forbidden

    with pytest.raises(Forbidden, match="not an admin"):
        store.create_token("alice", ["admin"])


def test_budget_refusal_names_limit_and_what_is_left(gateway: Gateway) -> None:
    big = {"command": "true", "nodes": 4, "cores_per_node": 10, "walltime_hours": 2}  # 80 of 100
    assert gateway.client.post("/api/v1/jobs", json=big, headers=gateway.auth(gateway.alice)).status_code == 201
    r = gateway.client.post("/api/v1/jobs", json=big, headers=gateway.auth(gateway.bob))
    assert r.status_code == 429
    detail = r.json()["detail"]
    assert "'lab'" in detail and "has 20 of its 100 core-hour budget left" in detail and "needs 80" in detail
    project = gateway.client.get("/api/v1/projects", headers=gateway.auth(gateway.bob)).json()[0]
    assert project["reserved_core_hours"] == 80 and project["available_core_hours"] == 20
    assert project["active_jobs"] == 1
    kinds = [(e["kind"], e["core_hours"]) for e in gateway.store.ledger("lab")]
    assert kinds == [("reserve", 80.0)]


def test_concurrent_job_limit(gateway: Gateway) -> None:
    small = {"command": "true", "walltime_hours": 0.5}
    for _ in range(3):
        assert gateway.client.post("/api/v1/jobs", json=small, headers=gateway.auth(gateway.alice)).status_code == 201
    r = gateway.client.post("/api/v1/jobs", json=small, headers=gateway.auth(gateway.alice))
    assert r.status_code == 429 and "concurrent-job limit of 3" in r.json()["detail"]


def test_cancel_queued_job_releases_its_reservation(gateway: Gateway) -> None:
    job = gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(gateway.alice)).json()
    r = gateway.client.delete(f"/api/v1/jobs/{job['id']}", headers=gateway.auth(gateway.alice))
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["terminal_stage"]
    project = gateway.client.get("/api/v1/projects", headers=gateway.auth(gateway.alice)).json()[0]
    assert project["reserved_core_hours"] == 0 and project["active_jobs"] == 0
    assert project["available_core_hours"] == 100
    assert [e["kind"] for e in gateway.store.ledger("lab")] == ["reserve", "release"]
    again = gateway.client.delete(f"/api/v1/jobs/{job['id']}", headers=gateway.auth(gateway.alice))
    assert again.status_code == 409


def test_legacy_descriptor(gateway: Gateway) -> None:
    legacy = {"command": "echo legacy", "node_number": 2, "core_number": 3, "runtime": 0.5, "title": "old"}
    r = gateway.client.post("/api/v1/jobs", json=legacy, headers=gateway.auth(gateway.alice))
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["nodes"], job["cores_per_node"], job["walltime_hours"]) == (2, 3, 0.5)
    assert job["core_hours_reserved"] == 3.0 and job["title"] == "old"
    clash = dict(legacy, nodes=5)
    assert gateway.client.post("/api/v1/jobs", json=clash, headers=gateway.auth(gateway.alice)).status_code == 400
    unknown = {**legacy, "shell": True}
    assert gateway.client.post("/api/v1/jobs", json=unknown, headers=gateway.auth(gateway.alice)).status_code == 422


def test_projects_are_members_only(gateway: Gateway) -> None:
    gateway.store.create_project("other", 10.0, members=["carol"])
    names = [p["name"] for p in gateway.client.get("/api/v1/projects", headers=gateway.auth(gateway.alice)).json()]
    assert names == ["lab"]
    r = gateway.client.post("/api/v1/jobs", json=dict(JOB, project="other"), headers=gateway.auth(gateway.alice))
    assert r.status_code == 404
    assert gateway.client.get("/api/v1/projects/other", headers=gateway.auth(gateway.alice)).status_code == 404
    lab = gateway.client.get("/api/v1/projects/lab", headers=gateway.auth(gateway.alice)).json()
    assert lab["members"] == ["alice", "bob"] and lab["budget_core_hours"] == 100
    assert gateway.client.get("/api/v1/projects/other", headers=gateway.auth(gateway.admin)).status_code == 200
    admin = [p["name"] for p in gateway.client.get("/api/v1/projects", headers=gateway.auth(gateway.admin)).json()]
    assert admin == ["lab", "other"]


def test_user_without_project_is_refused(gateway: Gateway) -> None:
    dave = gateway.store.create_token("dave")
    r = gateway.client.post("/api/v1/jobs", json=JOB, headers=gateway.auth(dave))
    assert r.status_code == 403 and "member of no project" in r.json()["detail"]


def test_admin_job_filters_by_project_system_and_date(gateway: Gateway) -> None:
    gateway.store.create_project("astro", 100.0, members=["alice"])
    client, alice, root = gateway.client, gateway.auth(gateway.alice), gateway.auth(gateway.admin)
    for project in ["lab", "astro", "astro"]:
        r = client.post("/api/v1/jobs", headers=alice, json={"command": "true", "project": project})
        assert r.status_code == 201

    def total(query: str) -> int:
        r = client.get(f"/api/v1/admin/jobs/?{query}", headers=root)
        assert r.status_code == 200, r.text
        return int(r.json()["total"])

    assert total("project=astro") == 2 and total("project=lab&state=queued") == 1
    assert total("system=local") == 3 and total("system=cluster") == 0
    assert total("since=2000-01-01T00:00:00Z") == 3 and total("until=2000-01-01T00:00:00Z") == 0
    assert total("since=2999-01-01T00:00:00") == 0
    assert client.get("/api/v1/admin/jobs/alice/?project=astro", headers=root).json()["total"] == 2
    assert client.get("/api/v1/admin/jobs/?since=yesterday", headers=root).status_code == 422
