"""Security of the gateway, a test each: result files confined to the job's directory and sent as
safe attachments; another user's job, file and project answer 404; the audit log of admin actions;
per-token rate limits; CORS only for configured origins; OIDC bearer tokens validated locally
against a JWKS file (issuer, audience, expiry, algorithm allowlist)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from corral.gateway.app import create_app
from corral.gateway.security import OidcSettings
from corral.gateway.settings import ATTEMPT_DIR, Settings
from corral.gateway.store import GatewayStore, JobRequest

from .conftest import Gateway


def _job_with_files(gateway: Gateway, tmp_path: Path, project: str | None = None) -> str:
    who = gateway.store.authenticate(gateway.alice)
    job_id = str(gateway.store.submit(who, JobRequest("true", project=project))["id"])
    jobdir = Settings(workdir=tmp_path).jobs_dir / job_id
    (jobdir / "sub").mkdir(parents=True)
    (jobdir / ATTEMPT_DIR).mkdir()
    (jobdir / "out.txt").write_text("result\n")
    (jobdir / "sub" / "<script>.html").write_text("<script>alert(1)</script>")
    (jobdir / ATTEMPT_DIR / "job.sh").write_text("#!/bin/bash\n")
    (jobdir / ATTEMPT_DIR / "stdout.log").write_text("printed\n")
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT")
    (jobdir / "escape").symlink_to(tmp_path / "secret.txt")
    (jobdir / "updir").symlink_to(tmp_path)
    return job_id


def test_result_files_are_confined_to_the_job_directory(gateway: Gateway, tmp_path: Path) -> None:
    job_id = _job_with_files(gateway, tmp_path)
    client, alice = gateway.client, gateway.auth(gateway.alice)
    listing = client.get(f"/api/v1/jobs/{job_id}/files", headers=alice).json()
    assert [f["path"] for f in listing] == ["out.txt", "sub/<script>.html"]  # no symlinks, no .corral
    got = client.get(f"/api/v1/jobs/{job_id}/files/sub/%3Cscript%3E.html", headers=alice)
    assert got.status_code == 200 and got.text == "<script>alert(1)</script>"
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith('attachment; filename="_script_.html"')
    assert got.headers["x-content-type-options"] == "nosniff" and "sandbox" in got.headers["content-security-policy"]
    for bad in ["%2Fetc%2Fpasswd", "..%2F..%2F..%2Fsecret.txt", "sub%2F..%2F..%2F..%2Fsecret.txt", "out.txt%00.png",
                "escape", "updir%2Fsecret.txt", ".corral%2Fjob.sh", "sub%5C..%5Cout.txt", "missing.txt"]:
        r = client.get(f"/api/v1/jobs/{job_id}/files/{bad}", headers=alice)
        assert r.status_code == 404 and "TOP-SECRET" not in r.text, (bad, r.text)
    log = client.get(f"/api/v1/jobs/{job_id}/logs/stdout", headers=alice)
    assert log.status_code == 200 and log.text == "printed\n" and log.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/api/v1/jobs/{job_id}/logs/stderr", headers=alice).status_code == 404
    assert client.get(f"/api/v1/jobs/{job_id}/logs/job.sh", headers=alice).status_code == 422


def test_another_users_job_file_and_project_answer_404(gateway: Gateway, tmp_path: Path) -> None:
    gateway.store.create_project("secret-lab", 10.0, members=["alice"])  # bob is not a member
    job_id = _job_with_files(gateway, tmp_path, project="secret-lab")
    bob = gateway.auth(gateway.bob)
    for path in [f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/files", f"/api/v1/jobs/{job_id}/files/out.txt",
                 f"/api/v1/jobs/{job_id}/logs/stdout", f"/api/v1/jobs/{job_id}/history", "/api/v1/projects/secret-lab",
                 "/api/v1/projects/secret-lab/quotas"]:
        r = gateway.client.get(path, headers=bob)
        assert r.status_code == 404 and "result" not in r.text, (path, r.text)
    assert gateway.client.get("/api/v1/projects/secret-lab/quotas", headers=gateway.auth(gateway.alice)).json() == []


def test_project_members_read_its_jobs_and_only_the_owner_cancels(gateway: Gateway, tmp_path: Path) -> None:
    """A project's members read its jobs (the job, history, files, logs), through the API and in
    the store's listing; a non-member gets 404 for each; a member's cancel is a 404 and changes nothing."""
    store, client = gateway.store, gateway.client
    store.create_project("shared", 10.0, members=["alice", "carol"])
    store.create_project("secret-lab", 10.0, members=["alice"])
    carol_token = store.create_token("carol")
    shared = _job_with_files(gateway, tmp_path, project="shared")
    private = _job_with_files(gateway, tmp_path, project="secret-lab")
    carol, bob = gateway.auth(carol_token), gateway.auth(gateway.bob)

    def reads(job_id: str) -> list[str]:
        return [f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/history", f"/api/v1/jobs/{job_id}/files",
                f"/api/v1/jobs/{job_id}/files/out.txt", f"/api/v1/jobs/{job_id}/logs/stdout"]

    for path in reads(shared):
        assert client.get(path, headers=carol).status_code == 200, path
    assert client.get(f"/api/v1/jobs/{shared}/files/out.txt", headers=carol).text == "result\n"
    assert client.delete(f"/api/v1/jobs/{shared}", headers=carol).status_code == 404  # only the owner cancels
    assert client.get(f"/api/v1/jobs/{shared}", headers=gateway.auth(gateway.alice)).json()["state"] == "queued"
    for who, job_id in ((carol, private), (bob, private), (bob, shared)):  # not members: as if it did not exist
        for path in reads(job_id):
            r = client.get(path, headers=who)
            assert r.status_code == 404 and "result" not in r.text, (path, r.text)
    carol_id, bob_id = (store.authenticate(t).user_id for t in (carol_token, gateway.bob))
    assert [j["id"] for j in store.list_jobs(None, limit=10, offset=0, viewer=carol_id)[0]] == [shared]
    assert store.list_jobs(None, limit=10, offset=0, viewer=bob_id) == ([], 0)  # bob shares only "lab"
    assert client.get("/api/v1/jobs", headers=carol).json()["total"] == 0  # the API lists a user's own jobs


def test_admin_actions_are_audited(gateway: Gateway) -> None:
    client, root = gateway.client, gateway.auth(gateway.admin)
    r = client.post("/api/v1/admin/projects", headers=root,
                    json={"name": "astro", "budget_core_hours": 50, "members": ["alice"]})
    assert r.status_code == 201 and r.json()["members"] == ["alice"]
    r = client.patch("/api/v1/admin/projects/astro", headers=root,
                     json={"budget_core_hours": 80, "max_concurrent_jobs": 2, "add_members": ["bob"]})
    assert r.json()["budget_core_hours"] == 80 and r.json()["members"] == ["alice", "bob"]
    assert client.put("/api/v1/admin/projects/astro/quotas/bob", headers=root,
                      json={"budget_core_hours": 5}).json()["available_core_hours"] == 5
    assert client.patch("/api/v1/admin/projects/astro", headers=root,
                        json={"system": "nowhere"}).json()["detail"].startswith("no HPC system 'nowhere'")
    assert client.post("/api/v1/admin/projects", headers=gateway.auth(gateway.alice),
                       json={"name": "mine", "budget_core_hours": 1}).status_code == 403
    log = client.get("/api/v1/admin/audit", headers=root).json()
    latest = [(e["actor"], e["action"], e["target"]) for e in log["items"][:3]]
    assert latest == [("root", "quota.set", "astro/bob"), ("root", "project.update", "astro"),
                      ("root", "project.create", "astro")]
    assert log["items"][1]["detail"]["budget_core_hours"] == 80
    assert any(e["action"] == "token.create" and e["actor"] == "cli" for e in log["items"])
    assert client.get("/api/v1/admin/audit", headers=gateway.auth(gateway.alice)).status_code == 403


def test_user_quota_inside_a_project(gateway: Gateway) -> None:
    store, client = gateway.store, gateway.client
    store.set_quota("root", "lab", "bob", 20.0)
    bob, alice = gateway.auth(gateway.bob), gateway.auth(gateway.alice)
    job = {"command": "true", "cores_per_node": 10, "walltime_hours": 1}
    first = client.post("/api/v1/jobs", headers=bob, json=job)
    assert first.status_code == 201 and client.post("/api/v1/jobs", headers=bob, json=job).status_code == 201
    refused = client.post("/api/v1/jobs", headers=bob, json=job)
    assert refused.status_code == 429 and "your quota in project 'lab' has 0 of its 20" in refused.json()["detail"]
    assert client.post("/api/v1/jobs", headers=alice, json=job).status_code == 201  # no quota: the budget applies
    client.delete(f"/api/v1/jobs/{first.json()['id']}", headers=bob)  # queued: released at once
    [quota] = client.get("/api/v1/projects/lab/quotas", headers=bob).json()
    assert quota["reserved_core_hours"] == 10 and quota["available_core_hours"] == 10
    assert client.get("/api/v1/projects/lab", headers=bob).json()["reserved_core_hours"] == 20  # bob 10, alice 10


def test_rate_limit_per_token(tmp_path: Path, store: GatewayStore) -> None:
    store.create_project("lab", 10.0, members=["alice", "bob"])
    alice, bob = store.create_token("alice"), store.create_token("bob")
    app = create_app(Settings(workdir=tmp_path, run_jobs=False, rate_limit=0.5, rate_burst=3), store=store)
    with TestClient(app) as client:
        codes = [client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {alice}"}).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        over = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {alice}"})
        assert int(over.headers["retry-after"]) >= 1 and "0.5 requests/s per token" in over.json()["detail"]
        assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {bob}"}).status_code == 200


def test_cors_only_for_configured_origins(tmp_path: Path, store: GatewayStore) -> None:
    preflight = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    for origins, origin, allowed in [((), "https://portal.example", False),
                                     (("https://portal.example",), "https://portal.example", True),
                                     (("https://portal.example",), "https://evil.example", False)]:
        app = create_app(Settings(workdir=tmp_path, run_jobs=False, cors_origins=origins), store=store)
        with TestClient(app) as client:
            r = client.options("/api/v1/jobs", headers={"Origin": origin, **preflight})
            assert (r.headers.get("access-control-allow-origin") == origin) is allowed, (origins, origin, r.headers)
            r = client.get("/ga4gh/tes/v1/service-info", headers={"Origin": origin})
            assert ("access-control-allow-origin" in r.headers) is allowed


@pytest.fixture
def oidc(tmp_path: Path, store: GatewayStore) -> tuple[TestClient, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    settings = Settings(workdir=tmp_path, run_jobs=False, oidc=OidcSettings(
        tmp_path / "jwks.json", issuer="https://idp.example", audience="corral-gateway", algorithms=("RS256",)))
    store.create_project("lab", 10.0, members=["oidc-alice"])
    return TestClient(create_app(settings, store=store)), key


def _jwt(key: Any, alg: str = "RS256", **claims: Any) -> str:
    body = {"iss": "https://idp.example", "aud": "corral-gateway", "sub": "oidc-alice", "exp": time.time() + 300,
            **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": "k1"})


def test_oidc_tokens_validated_against_a_local_jwks(oidc: tuple[TestClient, Any]) -> None:
    client, key = oidc

    def call(token: str) -> Any:
        return client.post("/api/v1/jobs", json={"command": "true"}, headers={"Authorization": f"Bearer {token}"})

    ok = call(_jwt(key))
    assert ok.status_code == 201 and ok.json()["owner"] == "oidc-alice"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for token, words in [(_jwt(key, exp=time.time() - 10), "expired"), (_jwt(key, aud="someone-else"), "Audience"),
                         (_jwt(key, iss="https://evil.example"), "ssuer"), (_jwt(other), "Signature"),
                         (jwt.encode({"sub": "oidc-alice"}, "s" * 32, algorithm="HS256"), "algorithm 'HS256'"),
                         (jwt.encode({"sub": "oidc-alice"}, "", algorithm="none"), "algorithm 'none'"),
                         ("not-a-jwt", "invalid OIDC token")]:
        r = call(token)
        assert r.status_code == 401 and words in r.json()["detail"], (words, r.text)
    only_read = _jwt(key, scope="openid jobs:read")
    assert call(only_read).status_code == 403  # the token's scope grants reading only


def test_admin_users_and_tokens(gateway: Gateway) -> None:
    client, root = gateway.client, gateway.auth(gateway.admin)
    made = client.post("/api/v1/admin/tokens", headers=root, json={"user": "carol", "scopes": ["jobs:read"],
                                                                   "expires_days": 1})
    assert made.status_code == 201
    token = made.json()["token"]
    assert client.get("/api/v1/jobs", headers=gateway.auth(token)).status_code == 200
    assert client.post("/api/v1/jobs", headers=gateway.auth(token), json={"command": "true"}).status_code == 403
    users = {u["name"]: u for u in client.get("/api/v1/admin/users", headers=root).json()}
    assert users["carol"]["role"] == "user" and users["carol"]["tokens"] == 1 and users["root"]["role"] == "admin"
    [listed] = client.get("/api/v1/admin/users/carol/tokens", headers=root).json()
    assert listed["prefix"] == token[:10] and listed["scopes"] == ["jobs:read"] and token not in str(listed)
    assert client.delete(f"/api/v1/admin/tokens/{token[:10]}", headers=root).json() == {"revoked": 1}
    assert client.get("/api/v1/jobs", headers=gateway.auth(token)).status_code == 401
    assert client.delete("/api/v1/admin/tokens/crl_nothing", headers=root).status_code == 404
    assert client.get("/api/v1/admin/users", headers=gateway.auth(gateway.alice)).status_code == 403
    actions = [(e["actor"], e["action"]) for e in client.get("/api/v1/admin/audit", headers=root).json()["items"][:2]]
    assert actions == [("root", "token.revoke"), ("root", "token.create")]
