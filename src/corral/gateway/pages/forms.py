"""The submit form: each field parsed and checked on its own (the error shown next to it), then
the project's HPC system limits (the gateway's system checker) and the budget, by the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ..pipelines import params_json, pipeline_path
from ..settings import Settings
from ..store import GatewayError, JobRequest, OverLimit, SystemCheck
from .auth import Caller, page, store_of

MAX_PIPELINES_LISTED = 500
MAX_NODES, MAX_CORES, MAX_WALLTIME_HOURS, MAX_MEMORY_GB = 10_000, 1_024, 24.0 * 365, 1_000_000.0
"""Bounds of any request (the REST API's); an HPC system's own limits are checked after."""
FIELD_WORDS = (("memory", "memory_gb"), ("node", "nodes"), ("core", "cores_per_node"), ("walltime", "walltime_hours"),
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
    pipeline: str = ""
    """A pipeline job: its file in the gateway's pipelines directory (empty: a command job)."""
    pipeline_name: str = ""
    params: str = ""
    """The pipeline's parameters, a JSON object."""
    memory_gb: str = ""
    """Memory per node in GB (empty: the system's default)."""

    @classmethod
    def empty(cls) -> JobForm:
        return cls("", "", "", "1", "1", "1")

    @classmethod
    def from_data(cls, data: Mapping[str, str]) -> JobForm:
        return cls(*(data.get(name, "").strip() for name in (
            "project", "title", "command", "nodes", "cores_per_node", "walltime_hours", "pipeline",
            "pipeline_name", "params", "memory_gb")))


def pipeline_files(pipelines_dir: Path) -> list[str]:
    """The pipeline files users may run: the ``.py`` files of the gateway's pipelines directory."""
    if not pipelines_dir.is_dir():
        return []
    found = sorted(p.relative_to(pipelines_dir).as_posix() for p in pipelines_dir.rglob("*.py")
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(pipelines_dir).parts))
    return found[:MAX_PIPELINES_LISTED]


def _pipeline_fields(form: JobForm, pipelines_dir: Path, errors: dict[str, str]) -> dict[str, Any]:
    """The pipeline part of a request (file, name, params as JSON); its errors into ``errors``."""
    if not form.pipeline:
        if form.params or form.pipeline_name:
            errors["pipeline"] = "choose a pipeline for these parameters, or clear them for a command job"
        return {}
    if form.command:
        errors["command"] = "a pipeline job has no command: clear the command, or choose no pipeline"
    try:
        pipeline_path(pipelines_dir, form.pipeline)
    except GatewayError as exc:
        errors["pipeline"] = str(exc)
    params: Any = {}
    if form.params:
        try:
            params = json.loads(form.params)
        except ValueError as exc:
            errors["params"] = f"parameters must be a JSON object, for example {{\"n\": 3}}: {exc}"
        if not isinstance(params, dict) and "params" not in errors:
            errors["params"] = "parameters must be a JSON object, for example {\"n\": 3}"
    if len(form.pipeline_name) > 200:
        errors["pipeline_name"] = "the pipeline name is longer than 200 characters"
    if errors:
        return {}
    return {"pipeline_file": form.pipeline, "pipeline_name": form.pipeline_name or None,
            "pipeline_params": params_json(params)}


def _number(text: str, cast: Callable[[str], float], low: float, high: float, what: str) -> tuple[float, str | None]:
    try:
        value = cast(text)
    except ValueError:
        return 0, f"{what} must be a number, not {text!r}"
    if not low <= value <= high:
        return 0, f"{what} must be between {low:g} and {high:g}"
    return value, None


def parse(form: JobForm, pipelines_dir: Path) -> tuple[JobRequest | None, dict[str, str]]:
    """The request of a filled form (a command job, or a pipeline job of ``pipelines_dir``), or the
    errors by field name."""
    errors: dict[str, str] = {}
    pipeline = _pipeline_fields(form, pipelines_dir, errors)
    if not form.command and not form.pipeline:
        errors["command"] = ("enter the command to run, for example: python3 analyse.py input.csv; "
                             "or choose a pipeline")
    elif len(form.command) > 100_000:
        errors["command"] = "the command is longer than 100,000 characters"
    if len(form.title) > 500:
        errors["title"] = "the title is longer than 500 characters"
    nodes, e1 = _number(form.nodes, int, 1, MAX_NODES, "nodes")
    cores, e2 = _number(form.cores_per_node, int, 1, MAX_CORES, "cores per node")
    hours, e3 = _number(form.walltime_hours, float, 1e-3, MAX_WALLTIME_HOURS, "walltime (hours)")
    memory, e4 = _number(form.memory_gb or "1", float, 1e-3, MAX_MEMORY_GB, "memory (GB)")
    for name, err in (("nodes", e1), ("cores_per_node", e2), ("walltime_hours", e3), ("memory_gb", e4)):
        if err:
            errors[name] = err
    if errors:
        return None, errors
    return JobRequest(command=form.command, title=form.title, project=form.project or None, nodes=int(nodes),
                      cores_per_node=int(cores), walltime_hours=float(hours),
                      memory_gb=float(memory) if form.memory_gb else None, **pipeline), {}


def field_of(message: str) -> str:
    lowered = message.lower()
    return next((field for word, field in FIELD_WORDS if word in lowered), "command")


def submit(request: Request, user: Caller, form: JobForm) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Queue the form's job: (the job, {}) or (None, the errors by field)."""
    if "jobs:write" not in user.who.scopes:
        return None, {"command": "this token lacks the jobs:write scope: it cannot submit jobs"}
    settings: Settings = request.app.state.settings
    req, errors = parse(form, settings.pipelines_dir)
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
        memory = f", {d['max_memory_gb']:g} GB per node" if d.get("max_memory_gb") else ""
        out[name] = (f"at most {d['max_nodes']} node(s), {d['max_cores_per_node']} core(s) per node{memory}, "
                     f"{d['max_walltime_hours']:g} h{queues}")
    return out


def form_page(request: Request, user: Caller, form: JobForm, errors: Mapping[str, str], status: int = 200) -> Response:
    projects = store_of(request).list_projects(user.who)
    if user.admin:  # an admin submits to their own projects only, as anyone
        projects = [p for p in projects if user.who.name in p["members"]]
    settings: Settings = request.app.state.settings
    return page(request, "submit.html.j2", user, status=status, title="Submit a job", form=asdict(form),
                errors=dict(errors), projects=projects, limits=limits(request),
                pipelines=pipeline_files(settings.pipelines_dir))
