"""Projects and their budgets as bars (a user's projects; every project for an admin), and for
admins the ledger: every reservation, charge and release of core-hours."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from .auth import caller, page, store_of

MAX_LEDGER_ROWS = 1000


def install(app: FastAPI) -> None:
    @app.get("/projects", include_in_schema=False)
    def projects(request: Request) -> Response:
        user = caller(request)
        return page(request, "projects.html.j2", user, title="Projects",
                    projects=store_of(request).list_projects(user.who))

    @app.get("/admin/ledger", include_in_schema=False)
    def ledger(request: Request, project: str = "") -> Response:
        user = caller(request)
        if not user.admin:
            return page(request, "message.html.j2", user, status=403, title="Admins only",
                        message="this page is for admins (the admin role and a token with the admin scope)")
        rows = store_of(request).ledger(project.strip() or None)
        return page(request, "ledger.html.j2", user, title="Ledger", rows=rows[-MAX_LEDGER_ROWS:][::-1],
                    total=len(rows), project=project.strip())
