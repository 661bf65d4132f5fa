"""The gateway's FastAPI application: ``create_app(settings)``; every route under ``/api/v1``.

Authentication: ``Authorization: Bearer <token>`` with a token of ``corral gateway token create``.
Reading jobs needs the ``jobs:read`` scope, submitting and cancelling ``jobs:write``, the admin
routes the ``admin`` scope and the admin role. A job of another user answers 404, as a job that
does not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from .files import attachment_headers, list_files, resolve
from .pipelines import PipelineRuns, params_json, pipeline_path
from .runner import job_dir, log_file
from .security import OidcVerifier, RateLimited, RateLimiter, TokenCache
from .settings import Settings
from .store import (
    Forbidden,
    GatewayError,
    GatewayStore,
    JobRequest,
    NotFound,
    Principal,
    SystemCheck,
    Unauthorized,
    default_url,
    hash_token,
)
from .store.reads import read_job, token_expiry
from .systems import HpcSystem, checker, load_systems, load_tools, tool_command

API = "/api/v1"
MAX_NODES, MAX_CORES, MAX_WALLTIME_HOURS, MAX_MEMORY_GB = 10_000, 1_024, 24.0 * 365, 1_000_000.0


class PipelineIn(BaseModel):
    """A Corral pipeline of the gateway's pipelines directory, by file and (optional) name."""

    model_config = ConfigDict(extra="forbid")
    file: str = Field(min_length=1, max_length=500)
    name: str | None = Field(default=None, min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict)


class JobIn(BaseModel):
    """A command job, or a pipeline job (``pipeline`` instead of ``command``). The seed's descriptor
    also works: ``node_number``, ``core_number`` and ``runtime`` (hours) for ``nodes``,
    ``cores_per_node`` and ``walltime_hours``."""

    model_config = ConfigDict(extra="forbid")
    command: str | None = Field(default=None, min_length=1, max_length=100_000)
    pipeline: PipelineIn | None = None
    tool: str | None = Field(default=None, min_length=1, max_length=200)
    """A named application of the gateway (``[tools]`` of gateway.toml): ``command`` holds its
    arguments."""
    title: str = Field(default="", max_length=500)
    project: str | None = Field(default=None, max_length=200)
    nodes: int | None = Field(default=None, ge=1, le=MAX_NODES)
    cores_per_node: int | None = Field(default=None, ge=1, le=MAX_CORES)
    walltime_hours: float | None = Field(default=None, gt=0, le=MAX_WALLTIME_HOURS)
    node_number: int | None = Field(default=None, ge=1, le=MAX_NODES)
    core_number: int | None = Field(default=None, ge=1, le=MAX_CORES)
    runtime: float | None = Field(default=None, gt=0, le=MAX_WALLTIME_HOURS)
    queue: str | None = Field(default=None, min_length=1, max_length=100)
    memory_gb: float | None = Field(default=None, gt=0, le=MAX_MEMORY_GB)
    """Memory per node, in GB (``--mem`` on SLURM); at most the HPC system's ``max_memory_gb``."""
    backend_parameters: dict[str, str] = Field(default_factory=dict, max_length=20)
    """Scheduler parameters of the system's allowlist (``GET /systems`` lists them), e.g.
    ``{"account": "lab", "qos": "short"}`` on SLURM; another key answers 422."""

    def request(self) -> JobRequest:
        def pick(new: Any, legacy: Any, default: Any, name: str) -> Any:
            if new is not None and legacy is not None and new != legacy:
                raise GatewayError(f"{name} given twice with different values")
            return new if new is not None else legacy if legacy is not None else default

        if (self.command is None and self.tool is None) == (self.pipeline is None):
            raise GatewayError("give either \"command\" (or \"tool\") or \"pipeline\" (a file, name and params), "
                               "not both")
        pipe = self.pipeline
        return JobRequest(
            command=self.command or "", title=self.title, project=self.project,
            pipeline_file=pipe.file if pipe else None, pipeline_name=pipe.name if pipe else None,
            pipeline_params=params_json(pipe.params) if pipe else None,
            nodes=pick(self.nodes, self.node_number, 1, "nodes/node_number"),
            cores_per_node=pick(self.cores_per_node, self.core_number, 1, "cores_per_node/core_number"),
            walltime_hours=pick(self.walltime_hours, self.runtime, 1.0, "walltime_hours/runtime"),
            queue=self.queue, memory_gb=self.memory_gb, backend=tuple(sorted(self.backend_parameters.items())),
        )


class ErrorOut(BaseModel):
    detail: str


class InvalidOut(BaseModel):
    """A 422: the request's fields as FastAPI validates them (a list), or one line naming a backend
    parameter the HPC system does not take."""

    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": InvalidOut if code == 422 else ErrorOut, "description": text} for code, text in [
        (400, "Inconsistent request, or over a limit of the HPC system"),
        (401, "Missing, unknown, expired or revoked token"),
        (403, "Scope, role or project membership missing"), (404, "No such object of yours"),
        (409, "Not in a state that allows this"),
        (422, "Invalid request, or a backend parameter the HPC system does not take"),
        (429, "Over the project's budget, a quota, the concurrent-job limit or the token's request rate"),
    ]
}


class Page(BaseModel):
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


@dataclass
class JobFilters:
    """Query filters of the admin job listings."""

    state: Annotated[str | None, Query(max_length=20)] = None
    project: Annotated[str | None, Query(max_length=200)] = None
    system: Annotated[str | None, Query(max_length=100)] = None
    since: datetime | None = None
    until: datetime | None = None

    def as_kwargs(self) -> dict[str, Any]:
        def utc(value: datetime | None) -> datetime | None:
            if value is None or value.tzinfo is None:
                return value
            return value.astimezone(UTC)

        return {"state": self.state, "project": self.project, "system": self.system,
                "since": utc(self.since), "until": utc(self.until)}


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
_bearer = HTTPBearer(auto_error=False)


def _store(request: Request) -> GatewayStore:
    store: GatewayStore = request.app.state.store
    return store


async def _store_dep(request: Request) -> GatewayStore:
    """The store, as a dependency (async: no worker-thread hop for what does not block)."""
    return _store(request)


async def _principal(request: Request,
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    """The caller: a gateway token's user, or an OIDC token's ``sub`` when OIDC is configured (a
    token without the gateway's ``crl_`` prefix); each token within its request rate. A gateway
    token's user comes from the token cache (a few seconds, see :class:`TokenCache`) or one indexed
    query; async: cheaper on the event loop than a hop to a worker thread."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    token, state, store = creds.credentials, request.app.state, _store(request)
    key = hash_token(token)
    limiter: RateLimiter | None = state.limiter
    if limiter is not None:
        limiter.hit(key)
    oidc: OidcVerifier | None = state.oidc
    if oidc is not None and not token.startswith("crl_"):
        subject, scopes = oidc.subject(token)
        user_id, role, granted = store.oidc_user(subject, scopes)
        return Principal(user_id, subject, role, granted)
    cache: TokenCache = state.token_cache
    return cache.principal(key, lambda: (store.authenticate(token), token_expiry(store, key)))


def scope(name: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if its token has scope ``name`` (and, for ``admin``, the admin role)."""

    async def check(who: Annotated[Principal, Depends(_principal)]) -> Principal:
        if name not in who.scopes:
            raise Forbidden(f"this token lacks the {name} scope")
        if name == "admin" and who.role != "admin":
            raise Forbidden("admin role needed")
        return who

    return check


Reader = Annotated[Principal, Depends(scope("jobs:read"))]
Writer = Annotated[Principal, Depends(scope("jobs:write"))]
Admin = Annotated[Principal, Depends(scope("admin"))]
Store = Annotated[GatewayStore, Depends(_store_dep)]


async def _check(request: Request) -> SystemCheck:
    check: SystemCheck = request.app.state.check
    return check


Check = Annotated[SystemCheck, Depends(_check)]


def _job_routes(api: APIRouter) -> None:
    """Jobs: submit, list, get, history, tasks, files, logs, cancel."""
    @api.post("/jobs", status_code=201, tags=["jobs"])
    def submit_job(job: JobIn, who: Writer, store: Store, check: Check, request: Request) -> dict[str, Any]:
        """Queue a command or pipeline job, reserving nodes x cores x walltime core-hours on the
        project; 400 if it exceeds a limit of the project's HPC system (nothing is submitted)."""
        req = job.request()
        if job.tool is not None:
            req = replace(req, command=tool_command(request.app.state.tools, job.tool, job.command or ""))
        if req.pipeline_file is not None:
            pipeline_path(request.app.state.settings.pipelines_dir, req.pipeline_file)
        return store.submit(who, req, check)

    @api.get("/jobs", tags=["jobs"])
    def list_jobs(who: Reader, store: Store, limit: Limit = 50, offset: Offset = 0,
                  state: str | None = None) -> Page:
        """The caller's jobs, newest first."""
        items, total = store.list_jobs(who.user_id, limit=limit, offset=offset, state=state)
        return Page(items=items, total=total, limit=limit, offset=offset)

    @api.get("/jobs/{job_id}", tags=["jobs"])
    async def get_job(job_id: str, who: Reader, store: Store) -> dict[str, Any]:
        """One of the caller's jobs. The most frequent request (status polling): one prebuilt Core
        select run on the event loop, cheaper than a hop to a worker thread (bench/gateway.py)."""
        return read_job(store, who, job_id)

    @api.get("/jobs/{job_id}/history", tags=["jobs"])
    def job_history(job_id: str, who: Reader, store: Store) -> list[dict[str, Any]]:
        """The states the job went through, oldest first."""
        return store.history(who, job_id)

    @api.get("/jobs/{job_id}/tasks", tags=["jobs"])
    def job_tasks(job_id: str, who: Reader, store: Store, request: Request) -> dict[str, Any]:
        """A pipeline job's run and its tasks with their states (400 for a command job)."""
        job = store.get_job(who, job_id)
        return PipelineRuns.tasks(job, job_dir(request.app.state.settings, job_id))

    @api.get("/jobs/{job_id}/files", tags=["jobs"])
    def job_files(job_id: str, who: Reader, store: Store, request: Request) -> list[dict[str, Any]]:
        """The job's result files (paths relative to its directory, and sizes)."""
        store.get_job(who, job_id)
        return list_files(job_dir(request.app.state.settings, job_id))

    @api.get("/jobs/{job_id}/files/{path:path}", tags=["jobs"], response_class=FileResponse,
             responses={200: {"content": {"application/octet-stream": {}}}})
    def job_file(job_id: str, path: str, who: Reader, store: Store, request: Request) -> FileResponse:
        """Download one result file, as an attachment; paths leaving the job's directory answer 404."""
        store.get_job(who, job_id)
        found = resolve(job_dir(request.app.state.settings, job_id), path)
        return FileResponse(found, media_type="application/octet-stream", headers=attachment_headers(found))

    @api.get("/jobs/{job_id}/logs/{stream}", tags=["jobs"], response_class=FileResponse,
             responses={200: {"content": {"text/plain": {}}}})
    def job_log(job_id: str, stream: Stream, who: Reader, store: Store, request: Request) -> FileResponse:
        """The job's standard output or error (404 before it has any)."""
        store.get_job(who, job_id)
        path = log_file(request.app.state.settings, job_id, stream.value)
        if not path.is_file():
            raise NotFound(f"job {job_id} has no {stream.value} yet")
        return FileResponse(path, media_type="text/plain; charset=utf-8", headers=attachment_headers(path))

    @api.delete("/jobs/{job_id}", tags=["jobs"])
    def cancel_job(job_id: str, who: Writer, store: Store) -> dict[str, Any]:
        """Cancel a job: a queued one at once, a running one is stopped by the runner."""
        return store.cancel(who, job_id)


def _project_routes(api: APIRouter) -> None:
    """Projects, HPC systems and the admin job listings."""
    @api.get("/projects", tags=["projects"])
    def list_projects(who: Reader, store: Store) -> list[dict[str, Any]]:
        """The caller's projects with their budgets (every project for an admin)."""
        return store.list_projects(who)

    @api.get("/projects/{name}", tags=["projects"])
    def get_project(name: str, who: Reader, store: Store) -> dict[str, Any]:
        """One of the caller's projects; another project answers 404."""
        return store.get_project(who, name)

    @api.get("/systems", tags=["systems"])
    def list_systems(who: Reader, request: Request) -> list[dict[str, Any]]:
        """The HPC systems and the limits of one job on each."""
        systems: dict[str, HpcSystem] = request.app.state.systems
        return [systems[name].describe() for name in sorted(systems)]

    @api.get("/admin/jobs/", tags=["admin"])
    def admin_jobs(who: Admin, store: Store, filters: Annotated[JobFilters, Depends()],
                   limit: Limit = 50, offset: Offset = 0) -> Page:
        """Every user's jobs (admin scope and role), filtered by state, project, system and
        submission time (``since`` <= submitted < ``until``, ISO 8601, UTC when no zone)."""
        items, total = store.list_jobs(None, limit=limit, offset=offset, **filters.as_kwargs())
        return Page(items=items, total=total, limit=limit, offset=offset)

    @api.get("/admin/jobs/{user}/", tags=["admin"])
    def admin_user_jobs(user: str, who: Admin, store: Store, filters: Annotated[JobFilters, Depends()],
                        limit: Limit = 50, offset: Offset = 0) -> Page:
        """One user's jobs (admin scope and role), with the same filters."""
        items, total = store.list_jobs(None, limit=limit, offset=offset, owner=user, **filters.as_kwargs())
        return Page(items=items, total=total, limit=limit, offset=offset)


def _routes(app: FastAPI) -> None:
    api = APIRouter(prefix=API, responses=ERRORS)
    _job_routes(api)
    _project_routes(api)
    app.include_router(api)
    from .admin_routes import admin_router
    from .ingest import ingest_router
    from .tes import tes_router

    app.include_router(admin_router(Admin, Reader, Store), responses=ERRORS)
    app.include_router(ingest_router(Writer, Reader, Store), responses=ERRORS)
    app.include_router(tes_router(scope, _store_dep, _check), responses=ERRORS)


def create_app(settings: Settings | None = None, store: GatewayStore | None = None) -> FastAPI:
    """The application. ``store``: an open store to use (tests); by default one on ``settings``."""
    settings = settings or Settings()
    store = store or GatewayStore(settings.db_url or default_url(settings.workdir))
    systems = load_systems(settings.workdir.resolve(), settings.systems_file)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = None
        if settings.run_jobs:
            from .runner import JobRunner

            runner = JobRunner(store, settings, systems)
            runner.start()
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()

    app = FastAPI(title="Corral gateway", version="0.1", lifespan=lifespan,
                  description="Runs jobs for many users and charges their core-hours to project budgets.")
    app.state.store = store
    app.state.settings = settings
    app.state.systems = systems
    app.state.check = checker(systems)
    app.state.tools = load_tools(settings.workdir.resolve(), settings.systems_file)
    app.state.limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit else None
    app.state.oidc = OidcVerifier(settings.oidc) if settings.oidc is not None else None
    app.state.token_cache = TokenCache()
    store.on_access_change.append(app.state.token_cache.clear)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    _routes(app)
    from .pages import mount as mount_pages  # the dashboard's pages at /, beside the API

    mount_pages(app)
    return app
