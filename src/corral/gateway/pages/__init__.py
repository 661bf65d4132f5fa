"""The gateway's web pages (issue 15): ``mount(app)`` adds them to the gateway's FastAPI app.

Login with an API token (a cookie session; the token is checked by the gateway store on every
request, so a revoked token ends its sessions), a user's jobs with state and core-hours, a job's
page (state history, timeline, progress followed with server-sent events, standard output and
error, result files to download, cancel with confirmation), a submit form checked field by field
(and against the project's HPC system when the gateway has a checker), projects with their budgets
as bars, and for admins every user's jobs, the ledger, the audit log and forms to create and edit
projects and set quotas. A pipeline job's run has the run page of :mod:`corral.web`. A user sees
their own jobs and their projects' (only the owner cancels) and their own projects; any other job
answers 404, as one that does not exist.

Templates and assets are those of :mod:`corral.web` (one look for both), plus this package's.
"""

from __future__ import annotations

from fastapi import FastAPI

from .auth import install as install_auth
from .jobs import install as install_jobs
from .projects import install as install_projects
from .runs import install as install_runs

__all__ = ["mount"]


def mount(app: FastAPI) -> None:
    """Add the pages to the gateway's ``app`` (it keeps its store and settings on ``app.state``)."""
    install_auth(app)
    install_jobs(app)
    install_projects(app)
    install_runs(app)
