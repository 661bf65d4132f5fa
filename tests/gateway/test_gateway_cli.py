"""``corral gateway``: tokens and projects through the command line, into the same database the
server reads."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from corral.cli.app import app
from corral.gateway.store import GatewayStore, Unauthorized, default_url

runner = CliRunner()


def _corral(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_token_create_prints_once_and_revoke(tmp_path: Path) -> None:
    wd = str(tmp_path)
    _corral("gateway", "project", "create", "lab", "--budget", "50", "--member", "alice", "-C", wd)
    token = _corral("gateway", "token", "create", "alice", "--scope", "jobs:read", "-C", wd).strip()
    admin = _corral("gateway", "token", "create", "root", "--admin", "-C", wd).strip()
    store = GatewayStore(default_url(tmp_path))
    try:
        who = store.authenticate(token)
        assert who.name == "alice" and who.scopes == {"jobs:read"} and who.role == "user"
        boss = store.authenticate(admin)
        assert boss.role == "admin" and boss.scopes == {"jobs:read", "jobs:write", "admin"}
        assert [p["name"] for p in store.list_projects(who)] == ["lab"]
        assert all(token not in row for row in store.token_hashes())
        assert "revoked 1" in _corral("gateway", "token", "revoke", token, "-C", wd)
        try:
            store.authenticate(token)
            raise AssertionError("a revoked token still works")
        except Unauthorized:
            pass
    finally:
        store.close()


def test_bad_scope_is_one_error_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["gateway", "token", "create", "bob", "--scope", "admin", "-C", str(tmp_path)])
    assert result.exit_code != 0 and "not an admin" in result.output


def test_serve_is_registered() -> None:
    out = _corral("gateway", "serve", "--help")
    assert "--port" in out and "--workdir" in out
