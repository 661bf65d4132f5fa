"""The submit form: each field parsed and checked on its own (the error shown next to it), then
the project's HPC system limits (the gateway's system checker) and the budget, by the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ..store import GatewayError, JobRequest, OverLimit, SystemCheck
from .auth import Caller, page, store_of

MAX_NODES, MAX_CORES, MAX_WALLTIME_HOURS = 10_000, 1_024, 24.0 * 365
"""Bounds of any request (the REST API's); an HPC system's own limits are checked after."""
FIELD_WORDS = (("node", "nodes"), ("core", "cores_per_node"), ("walltime", "walltime_hours"),
               ("command", "command"), ("budget", "project"), ("project", "project"), ("queue", "command"))
"""A refusal's words, and the field it is shown next to."""


@dataclass(frozen=True)
class JobForm:
    project: str
    title: str
    command: str
    nodes: str
    cores_per_node: str
    walltime_hours: str

    @classmethod
    def empty(cls) -> JobForm:
        return cls("", "", "", "1", "1", "1")

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> JobForm:
        return cls(*(data.get(name, "").strip() for name in (
            "project", "title", "command", "nodes", "cores_per_node", "walltime_hours")))


def _number(text: str, cast: Callable[[str], float], low: float, high: float, what: str) -> tuple[float, str | None]:
    try:
        value = cast(text)
    except ValueError:
        return 0, f"{what} must be a number, not {text!r}"
    if not low <= value <= high:
        return 0, f"{what} must be between {low:g} and {high:g}"
    return value, None


def parse(form: JobForm) -> tuple[JobRequest | None, dict[str, str]]:
    """The request of a filled form, or the errors by field name."""
    errors: dict[str, str] = {}
    if not form.command:
        errors["command"] = "enter the command to run, for example: python3 analyse.py input.csv"
    elif len(form.command) > 100_000:
        errors["command"] = "the command is longer than 100,000 characters"
    if len(form.title) > 500:
        errors["title"] = "the title is longer than 500 characters"
    nodes, e1 = _number(form.nodes, int, 1, MAX_NODES, "nodes")
    cores, e2 = _number(form.cores_per_node, int, 1, MAX_CORES, "cores per node")
    hours, e3 = _number(form.walltime_hours, float, 1e-3, MAX_WALLTIME_HOURS, "walltime (hours)")
    for name, err in (("nodes", e1), ("cores_per_node", e2), ("walltime_hours", e3)):
        if err:
            errors[name] = err
    if errors:
        return None, errors
    return JobRequest(command=form.command, title=form.title, project=form.project or None, nodes=int(nodes),
                      cores_per_node=int(cores), walltime_hours=float(hours)), {}


def field_of(message: str) -> str:
    lowered = message.lower()
    return next((field for word, field in FIELD_WORDS if word in lowered), "command")


def submit(request: Request, user: Caller, form: JobForm) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Queue the form's job: (the job, {}) or (None, the errors by field)."""
    if "jobs:write" not in user.who.scopes:
        return None, {"command": "this token lacks the jobs:write scope: it cannot submit jobs"}
    req, errors = parse(form)
    if req is None:
        return None, errors
    store = store_of(request)
    projects = {p["name"] for p in store.list_projects(user.who)}
    if req.project is not None and req.project not in projects:
        return None, {"project": f"no project {req.project!r} of yours; choose one of the list"}
    check: SystemCheck = request.app.state.check
    try:
        return store.submit(user.who, req, check), {}
    except OverLimit as exc:
        return None, {"project": str(exc)}
    except GatewayError as exc:
        return None, {field_of(str(exc)): str(exc)}


def limits(request: Request) -> dict[str, str]:
    """Per HPC system, the limits of one job on it, in words."""
    systems: Mapping[str, Any] = getattr(request.app.state, "systems", {})
    out = {}
    for name, system in systems.items():
        d = system.describe()
        queues = f"; queues {', '.join(d['queues'])}" if d["queues"] else ""
        out[name] = (f"at most {d['max_nodes']} node(s), {d['max_cores_per_node']} core(s) per node, "
                     f"{d['max_walltime_hours']:g} h{queues}")
    return out


def form_page(request: Request, user: Caller, form: JobForm, errors: Mapping[str, str], status: int = 200) -> Response:
    projects = store_of(request).list_projects(user.who)
    if user.admin:  # an admin submits to their own projects only, as anyone
        projects = [p for p in projects if user.who.name in p["members"]]
    return page(request, "submit.html.j2", user, status=status, title="Submit a job", form=asdict(form),
                errors=dict(errors), projects=projects, limits=limits(request))
