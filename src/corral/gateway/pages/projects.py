"""Projects and their budgets as bars, with the per-user quotas inside them (a user's own; every
member's for an admin); for admins a form to create or edit a project (budget, concurrent-job
limit, HPC system, members) and one to set a member's quota (both audited by the store, as the
API's admin actions), the ledger (every reservation, charge and release of core-hours) and the
audit log of admin actions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from ..store import GatewayError
from .auth import Caller, caller, check_form, page, store_of

MAX_LEDGER_ROWS = 1000
AUDIT_PAGE = 100
PROJECT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
MAX_MEMBERS = 100
PROJECT_FIELDS = ("name", "system", "budget_core_hours", "max_concurrent_jobs", "members")


def admins_only(request: Request, user: Caller) -> Response | None:
    if user.admin:
        return None
    return page(request, "message.html.j2", user, status=403, title="Admins only",
                message="this page is for admins (the admin role and a token with the admin scope)")


def _projects(request: Request, user: Caller, errors: dict[str, str] | None = None,
              form: dict[str, str] | None = None, project_form: dict[str, str] | None = None,
              project_errors: dict[str, str] | None = None) -> Response:
    store = store_of(request)
    projects = store.list_projects(user.who)
    quotas: dict[str, list[dict[str, Any]]] = {
        p["name"]: store.quotas(p["name"], None if user.admin else user.who.name) for p in projects}
    if project_form is None:  # "Edit" of a project's row fills the project form with it
        editing = next((p for p in projects if p["name"] == request.query_params.get("edit")), None)
        project_form = _project_values(editing)
    return page(request, "projects.html.j2", user, title="Projects", projects=projects,
                quotas=quotas, errors=errors or {}, form=form or {"project": "", "member": "", "budget": ""},
                done=request.query_params.get("done", ""), saved=request.query_params.get("saved", ""),
                project_form=project_form, project_errors=project_errors or {},
                systems=sorted(getattr(request.app.state, "systems", {})))


def _project_values(project: Mapping[str, Any] | None) -> dict[str, str]:
    if project is None:
        return {"name": "", "system": "", "budget_core_hours": "", "max_concurrent_jobs": "10", "members": ""}
    return {"name": project["name"], "system": project["system"],
            "budget_core_hours": f"{project['budget_core_hours']:g}",
            "max_concurrent_jobs": str(project["max_concurrent_jobs"]), "members": ", ".join(project["members"])}


def parse_project(form: Mapping[str, str], systems: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """A project form's values (name, system, budget, limit, members), or the errors by field."""
    errors: dict[str, str] = {}
    name = form["name"]
    if not PROJECT_NAME.match(name):
        errors["name"] = "a project name is 1 to 200 letters, digits, '.', '_' or '-'"
    if form["system"] not in systems:
        errors["system"] = f"no HPC system {form['system']!r} on this gateway; choose one of {', '.join(systems)}"
    budget = limit = 0.0
    try:
        budget = float(form["budget_core_hours"])
        if not 0 <= budget <= 1e12:
            errors["budget_core_hours"] = "the budget must be between 0 and 10^12 core-hours"
    except ValueError:
        errors["budget_core_hours"] = f"the budget is a number of core-hours, not {form['budget_core_hours']!r}"
    try:
        limit = int(form["max_concurrent_jobs"])
        if not 1 <= limit <= 1_000_000:
            errors["max_concurrent_jobs"] = "the concurrent-job limit must be a whole number from 1 to 1,000,000"
    except ValueError:
        errors["max_concurrent_jobs"] = (f"the concurrent-job limit is a whole number, "
                                         f"not {form['max_concurrent_jobs']!r}")
    members = list(dict.fromkeys(m for m in re.split(r"[,\s]+", form["members"]) if m))
    bad = [m for m in members if len(m) > 200]
    if bad or len(members) > MAX_MEMBERS:
        errors["members"] = f"at most {MAX_MEMBERS} member names, each at most 200 characters, separated by commas"
    return {"name": name, "system": form["system"], "budget": budget, "limit": limit, "members": members}, errors


def save_project(request: Request, user: Caller, values: Mapping[str, Any]) -> None:
    """Create the project, or update it to the form's values (members: exactly the form's list);
    the store audits either with the admin's name."""
    store = store_of(request)
    existing = next((p for p in store.list_projects(user.who) if p["name"] == values["name"]), None)
    if existing is None:
        store.create_project(values["name"], values["budget"], system=values["system"],
                             max_concurrent_jobs=values["limit"], members=values["members"], actor=user.who.name)
        return
    store.update_project(user.who.name, values["name"], budget_core_hours=values["budget"],
                         max_concurrent_jobs=values["limit"], system=values["system"],
                         add_members=[m for m in values["members"] if m not in existing["members"]],
                         remove_members=[m for m in existing["members"] if m not in values["members"]])


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

    @app.post("/admin/projects", include_in_schema=False)
    async def edit_project(request: Request) -> Response:
        user = caller(request)
        refused = admins_only(request, user)
        if refused is not None:
            return refused
        data = await request.form()
        check_form(user, str(data.get("token", "")))
        form = {k: str(data.get(k, "")).strip() for k in PROJECT_FIELDS}
        values, errors = parse_project(form, sorted(getattr(request.app.state, "systems", {})))
        if not errors:
            try:
                save_project(request, user, values)
            except GatewayError as exc:
                errors = {"budget_core_hours" if "budget" in str(exc) else "name": str(exc)}
        if errors:
            return _projects(request, user, project_form=form, project_errors=errors)
        return RedirectResponse(f"/projects?saved={quote(values['name'])}", status_code=303)

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
