"""The gateway's settings: where it keeps its database and job directories, and whether it runs jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .security import OidcSettings

ATTEMPT_DIR = ".corral"
"""A job's attempt files (job script, payload, logs, exit marker), inside the job's directory."""


@dataclass(frozen=True)
class Settings:
    workdir: Path = Path(".")
    """The gateway's database (``.corral/gateway.db`` by default) and job directories live here."""
    db_url: str | None = None
    """SQLAlchemy URL of the gateway's database; ``None``: SQLite at ``<workdir>/.corral/gateway.db``."""
    run_jobs: bool = True
    """Run queued jobs on their HPC systems from a background thread (False: jobs stay queued)."""
    max_running: int = 4
    """How many jobs the runner has handed to executors at once (all systems together)."""
    poll_seconds: float = 0.2
    """Seconds between the runner's rounds (each polls every executor once)."""
    systems_file: Path | None = None
    """The HPC systems (``None``: ``<workdir>/gateway.toml``; only ``local`` without it)."""
    rate_limit: float | None = None
    """Requests a second per API token, on average (None: no limit); over it, 429."""
    rate_burst: int = 50
    """Requests a token may send at once before the rate applies."""
    cors_origins: tuple[str, ...] = ()
    """Origins browsers may call the API from (none: no CORS headers at all)."""
    oidc: OidcSettings | None = None
    """Accept OIDC bearer tokens validated against a local JWKS file (None: gateway tokens only)."""

    @property
    def pipelines_dir(self) -> Path:
        """The pipeline files users may run (pipeline jobs name a file in here)."""
        return self.workdir.resolve() / "pipelines"

    @property
    def jobs_dir(self) -> Path:
        return self.workdir.resolve() / ".corral" / "gateway-jobs"
