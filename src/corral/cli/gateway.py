"""``corral gateway``: the multi-user REST service of issue 14 (docs/gateway.md).

``serve`` starts it (uvicorn on 127.0.0.1); ``token create/revoke`` manage API tokens, printed
once and stored only as their SHA-256; ``project create`` and ``project add-member`` set up the
projects whose budgets jobs are charged to. Everything is imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .common import DbOpt, WorkdirOpt, app, handled, say

if TYPE_CHECKING:
    from corral.gateway.store import GatewayStore

gateway_app = typer.Typer(name="gateway", no_args_is_help=True,
                          help="The multi-user gateway: a REST service that runs jobs and charges project budgets.")
token_app = typer.Typer(name="token", no_args_is_help=True, help="API tokens of the gateway.")
project_app = typer.Typer(name="project", no_args_is_help=True, help="Projects and their core-hour budgets.")
gateway_app.add_typer(token_app)
gateway_app.add_typer(project_app)
app.add_typer(gateway_app)


def _open(workdir: Path, db: str | None) -> GatewayStore:
    from corral.gateway.store import GatewayStore, default_url

    return GatewayStore(db or default_url(workdir))


@gateway_app.command()
def serve(workdir: WorkdirOpt = Path("."), db: DbOpt = None,
          port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8750,
          no_run: Annotated[bool, typer.Option("--no-run", help="Keep jobs queued: run none.")] = False,
          systems: Annotated[Path | None, typer.Option(help="HPC systems file (default: <workdir>/gateway.toml).")] = None,  # noqa: E501
          rate_limit: Annotated[float, typer.Option(help="Requests/s per token (bursts of 50); 0: no limit.")] = 20.0,
          cors_origin: Annotated[list[str] | None, typer.Option("--cors-origin", help="A browser origin allowed to call the API (repeat).")] = None,  # noqa: E501
          oidc_jwks: Annotated[Path | None, typer.Option(help="Accept OIDC tokens signed by the keys of this JWKS file.")] = None,  # noqa: E501
          oidc_issuer: Annotated[str, typer.Option(help="The OIDC tokens' required issuer (iss).")] = "",
          oidc_audience: Annotated[str, typer.Option(help="The OIDC tokens' required audience (aud).")] = "",
          ) -> None:
    """Serve the gateway's REST API on 127.0.0.1 (SQLite in <workdir>/.corral/gateway.db by default);
    jobs run on the HPC systems of gateway.toml (only the local machine without it).

    Example: corral gateway serve --port 8750"""
    from corral.optional import require

    with handled():
        require("fastapi", "corral gateway serve", "gateway")
        uvicorn = require("uvicorn", "corral gateway serve", "gateway")
        from corral.errors import UsageError
        from corral.gateway.app import create_app
        from corral.gateway.security import OidcSettings
        from corral.gateway.settings import Settings

        oidc = None
        if oidc_jwks is not None:
            if not (oidc_issuer and oidc_audience):
                raise UsageError("--oidc-jwks needs --oidc-issuer and --oidc-audience")
            oidc = OidcSettings(oidc_jwks, oidc_issuer, oidc_audience)
        application = create_app(Settings(workdir=workdir, db_url=db, run_jobs=not no_run, systems_file=systems,
                                          rate_limit=rate_limit or None, cors_origins=tuple(cors_origin or ()),
                                          oidc=oidc))
    uvicorn.run(application, host="127.0.0.1", port=port, log_level="info")


@gateway_app.command()
def openapi() -> None:
    """Print the gateway's OpenAPI spec (JSON), as `serve` would serve it at /openapi.json.

    Example: corral gateway openapi > docs/gateway-openapi.json"""
    import json
    import tempfile

    from corral.optional import require

    with handled():
        require("fastapi", "corral gateway openapi", "gateway")
        from corral.gateway.app import create_app
        from corral.gateway.settings import Settings

        with tempfile.TemporaryDirectory() as scratch:  # no database is needed to describe the API
            spec = create_app(Settings(workdir=Path(scratch), db_url=f"sqlite:///{scratch}/gw.db",
                                       run_jobs=False)).openapi()
    typer.echo(json.dumps(spec, indent=2, sort_keys=True))


@token_app.command("create")
def token_create(user: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None,
                 admin: Annotated[bool, typer.Option("--admin", help="Make USER an admin; the token gets every scope.")] = False,  # noqa: E501
                 scope: Annotated[list[str] | None, typer.Option("--scope", help="jobs:read, jobs:write or admin (repeat); default: jobs:read and jobs:write, every scope with --admin.")] = None,  # noqa: E501
                 expires_days: Annotated[float | None, typer.Option("--expires-days", help="Expire after this many days.")] = None,  # noqa: E501
                 ) -> None:
    """Create an API token for USER (created if new) and print it: the only time it is shown.

    Example: corral gateway token create alice --scope jobs:read"""
    with handled():
        token = _open(workdir, db).create_token(user, scope, admin=admin, expires_days=expires_days)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(token: Annotated[str, typer.Argument(help="The token, or its first 10 characters.")],
                 workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Revoke a token: requests with it answer 401 from now on.

    Example: corral gateway token revoke crl_AbCdEf"""
    from corral.errors import UsageError

    with handled():
        count = _open(workdir, db).revoke_token(token)
        if not count:
            raise UsageError("no such token")
    say(False, {}, f"revoked {count} token(s)")


@project_app.command("create")
def project_create(name: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None,
                   budget: Annotated[float, typer.Option(help="Core-hour budget.")] = 1000.0,
                   system: Annotated[str, typer.Option(help="HPC system the project's jobs run on.")] = "local",
                   max_jobs: Annotated[int, typer.Option("--max-jobs", help="Concurrent-job limit.")] = 10,
                   member: Annotated[list[str] | None, typer.Option("--member", help="A member (repeat).")] = None,
                   ) -> None:
    """Create a project with a core-hour budget.

    Example: corral gateway project create lab --budget 500 --member alice"""
    with handled():
        _open(workdir, db).create_project(name, budget, system=system, max_concurrent_jobs=max_jobs,
                                          members=member or [])
    say(False, {}, f"project {name} created")


@project_app.command("add-member")
def project_add_member(name: str, user: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Add USER to project NAME.

    Example: corral gateway project add-member lab bob"""
    with handled():
        _open(workdir, db).add_member(name, user)
    say(False, {}, f"{user} is a member of {name}")
