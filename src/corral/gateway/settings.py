"""The gateway's settings: where it keeps its database and job directories, and whether it runs jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    workdir: Path = Path(".")
    """The gateway's database (``.corral/gateway.db`` by default) and job directories live here."""
    db_url: str | None = None
    """SQLAlchemy URL of the gateway's database; ``None``: SQLite at ``<workdir>/.corral/gateway.db``."""
    run_jobs: bool = True
    """Run queued jobs locally in a background thread (False: jobs stay queued)."""
    max_running: int = 4
    """How many jobs the local runner runs at once."""
    poll_seconds: float = 0.2

    @property
    def jobs_dir(self) -> Path:
        return self.workdir.resolve() / ".corral" / "gateway-jobs"
