"""The OpenAPI spec checked in at docs/gateway-openapi.json is the one the gateway serves."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from corral.gateway.app import create_app
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore

CHECKED_IN = Path(__file__).resolve().parents[2] / "docs" / "gateway-openapi.json"


def test_checked_in_spec_matches_the_served_one(tmp_path: Path, store: GatewayStore) -> None:
    with TestClient(create_app(Settings(workdir=tmp_path, run_jobs=False), store=store)) as client:
        served = client.get("/openapi.json").json()
    assert served == json.loads(CHECKED_IN.read_text()), (
        f"{CHECKED_IN} is out of date: regenerate it with `corral gateway openapi > docs/gateway-openapi.json`")
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}/files/{path}", "/ga4gh/tes/v1/tasks"} <= set(served["paths"])
