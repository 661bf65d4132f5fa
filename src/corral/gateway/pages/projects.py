"""Projects and their budgets as bars, with the per-user quotas inside them (a user's own; every
member's for an admin); for admins a form to set a member's quota, the ledger (every reservation,
charge and release of core-hours) and the audit log of admin actions."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..store import GatewayError
from .auth import Caller, caller, check_form, page, store_of

MAX_LEDGER_ROWS = 1000
AUDIT_PAGE = 100


def admins_only(request: Request, user: Caller) -> Response | None:
    if user.admin:
        return None
    return page(request, "message.html.j2", user, status=403, title="Admins only",
                message="this page is for admins (the admin role and a token with the admin scope)")


def _projects(request: Request, user: Caller, errors: dict[str, str] | None = None,
              form: dict[str, str] | None = None) -> Response:
    store = store_of(request)
    projects = store.list_projects(user.who)
    quotas: dict[str, list[dict[str, Any]]] = {
        p["name"]: store.quotas(p["name"], None if user.admin else user.who.name) for p in projects}
    return page(request, "projects.html.j2", user, title="Projects", projects=projects, quotas=quotas,
                errors=errors or {}, form=form or {"project": "", "member": "", "budget": ""},
                done=request.query_params.get("done", ""))


def install(app: FastAPI) -> None:
    @app.get("/projects", include_in_schema=False)
    def projects(request: Request) -> Response:
        return _projects(request, caller(request))

    @app.post("/admin/quotas", include_in_schema=False)
    def set_quota(request: Request, project: Annotated[str, Form()] = "", member: Annotated[str, Form()] = "",
                  budget: Annotated[str, Form()] = "", token: Annotated[str, Form()] = "") -> Response:
        user = caller(request)
        refused = admins_only(request, user)
        if refused is not None:
            return refused
        check_form(user, token)
        form = {"project": project, "member": member.strip(), "budget": budget.strip()}
        try:
            hours = float(form["budget"])
        except ValueError:
            return _projects(request, user, {"budget": f"a quota is a number of core-hours, not {budget!r}"}, form)
        try:
            store_of(request).set_quota(user.who.name, project, form["member"], hours)
        except GatewayError as exc:
            field = "budget" if "core-hours" in str(exc) else "member"
            return _projects(request, user, {field: str(exc)}, form)
        return RedirectResponse(f"/projects?done={quote(form['member'] + ' in ' + project)}", status_code=303)

    @app.get("/admin/ledger", include_in_schema=False)
    def ledger(request: Request, project: str = "") -> Response:
        user = caller(request)
        refused = admins_only(request, user)
        if refused is not None:
            return refused
        rows = store_of(request).ledger(project.strip() or None)
        return page(request, "ledger.html.j2", user, title="Ledger", rows=rows[-MAX_LEDGER_ROWS:][::-1],
                    total=len(rows), project=project.strip())

    @app.get("/admin/audit", include_in_schema=False)
    def audit(request: Request) -> Response:
        user = caller(request)
        refused = admins_only(request, user)
        if refused is not None:
            return refused
        rows, total = store_of(request).audit_log(limit=AUDIT_PAGE, offset=0)
        return page(request, "audit.html.j2", user, title="Audit log", rows=rows, total=total)
