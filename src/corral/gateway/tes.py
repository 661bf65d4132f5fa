"""GA4GH TES 1.1 at ``/ga4gh/tes/v1``: TES tasks are the gateway's command jobs.

A task has one executor whose ``command`` (an argument list) becomes the job's command, quoted with
:func:`shlex.join` (the runner splits it back: no shell ever sees it); ``resources.cpu_cores`` is
the job's cores per node, ``resources.ram_gb`` its memory per node (within the system's
``max_memory_gb``), ``resources.backend_parameters`` ``nodes`` and ``walltime_hours`` its nodes and
walltime (1 and 1 hour by default) and the other keys scheduler parameters of the allowlist of
the task's HPC system (``account``, ``qos``, ``constraint`` on SLURM, ``project`` on Grid
Engine: :data:`corral.gateway.systems.BACKEND_KEYS`; others are ignored, or refused with 422 if
``backend_parameters_strict``), ``name`` its title, ``tags`` are stored with it and
``tags["project"]`` names the project to charge (the user's only project if omitted); the task
runs on that project's HPC system, within its limits. What the gateway cannot honour is refused
with 400: several executors, inputs, outputs, volumes, an executor's ``workdir``, ``env``,
``stdin``, ``stdout`` or ``stderr``. ``image`` is recorded in nothing and ignored (no containers).
Same bearer tokens and scopes as ``/api/v1``; another user's task answers 404.
"""

import shlex
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from .runner import log_file
from .settings import Settings
from .store import (
    TERMINAL_JOB_STATES,
    GatewayError,
    GatewayStore,
    JobRequest,
    JobState,
    NotFound,
    Principal,
    SystemCheck,
)

TES = "/ga4gh/tes/v1"
BACKEND_PARAMETERS = ("nodes", "walltime_hours")
"""``resources.backend_parameters`` of every HPC system; the others go to the system's allowlist."""
MAX_NODES, MAX_HOURS, MAX_COMMAND, MAX_TAG_KEY, MAX_TAG_VALUE = 10_000, 24.0 * 365, 100_000, 200, 1000
LOG_LIMIT = 64 * 1024
"""FULL view: at most the last this many bytes of a task's standard output and error."""

STATES = {
    JobState.QUEUED: "QUEUED", JobState.INITIALIZING: "INITIALIZING", JobState.RUNNING: "RUNNING",
    JobState.COMPLETED: "COMPLETE", JobState.FAILED: "EXECUTOR_ERROR", JobState.TIMEOUT: "EXECUTOR_ERROR",
    JobState.CANCELLING: "CANCELING", JobState.CANCELLED: "CANCELED",
    JobState.SYSTEM_ERROR: "SYSTEM_ERROR",
}
"""The gateway's job states as TES task states (PAUSED and PREEMPTED are never reported)."""


class View(StrEnum):
    MINIMAL = "MINIMAL"
    BASIC = "BASIC"
    FULL = "FULL"


class TesState(StrEnum):
    UNKNOWN = "UNKNOWN"
    QUEUED = "QUEUED"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    COMPLETE = "COMPLETE"
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    SYSTEM_ERROR = "SYSTEM_ERROR"
    CANCELED = "CANCELED"
    PREEMPTED = "PREEMPTED"
    CANCELING = "CANCELING"


class TesExecutor(BaseModel):
    model_config = ConfigDict(extra="ignore")
    image: str = Field(default="", max_length=1000)
    command: list[str] = Field(min_length=1, max_length=10_000)
    workdir: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    env: dict[str, str] | None = None
    ignore_error: bool | None = None


class TesResources(BaseModel):
    model_config = ConfigDict(extra="ignore")
    cpu_cores: int | None = Field(default=None, ge=1, le=1024)
    preemptible: bool | None = None
    ram_gb: float | None = Field(default=None, ge=0, le=1_000_000)
    disk_gb: float | None = Field(default=None, ge=0)
    zones: list[str] | None = None
    backend_parameters: dict[str, str] | None = None
    backend_parameters_strict: bool | None = None


class TesTaskIn(BaseModel):
    """A ``tesTask`` as submitted."""

    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(default=None, max_length=500)
    description: str | None = None
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    resources: TesResources | None = None
    executors: list[TesExecutor] = Field(min_length=1)
    volumes: list[str] | None = None
    tags: dict[str, str] | None = None


class CreateTaskOut(BaseModel):
    id: str


class ExecutorLogOut(BaseModel):
    start_time: str | None = None
    end_time: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None


class TaskLogOut(BaseModel):
    logs: list[ExecutorLogOut]
    metadata: dict[str, str] | None = None
    start_time: str | None = None
    end_time: str | None = None
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    system_logs: list[str] | None = None


class TaskOut(BaseModel):
    """A ``tesTask`` as shown: MINIMAL has ``id`` and ``state`` only."""

    id: str
    state: TesState
    name: str | None = None
    description: str | None = None
    resources: dict[str, Any] | None = None
    executors: list[dict[str, Any]] | None = None
    tags: dict[str, str] | None = None
    logs: list[TaskLogOut] | None = None
    creation_time: str | None = None


class ListTasksOut(BaseModel):
    tasks: list[TaskOut]
    next_page_token: str | None = None


class ServiceInfoOut(BaseModel):
    id: str
    name: str
    type: dict[str, str]
    description: str
    organization: dict[str, str]
    version: str
    storage: list[str]
    tesResources_backend_parameters: list[str]  # the TES field's own name


def _refuse(task: TesTaskIn) -> None:
    if len(task.executors) != 1:
        raise GatewayError(f"this gateway runs tasks of exactly one executor; this task has {len(task.executors)}")
    if task.inputs or task.outputs or task.volumes:
        raise GatewayError("inputs, outputs and volumes are not supported: the task runs in its own job "
                           "directory on the gateway's host; fetch results through /api/v1")
    ex = task.executors[0]
    unsupported = [name for name in ("workdir", "stdin", "stdout", "stderr", "env") if getattr(ex, name)]
    if unsupported:
        raise GatewayError(f"executor field(s) {', '.join(unsupported)} are not supported by this gateway")


def _number(params: dict[str, str], name: str, kind: type[int] | type[float], high: float) -> Any:
    try:
        value = kind(params[name])
    except ValueError:
        raise GatewayError(f"backend_parameters.{name}: not a number: {params[name]!r}") from None
    if not 0 < value <= high:
        raise GatewayError(f"backend_parameters.{name}: {value} is out of range (0, {high:g}]")
    return value


def _request(task: TesTaskIn) -> JobRequest:
    """The job of a TES task, or a 400 naming what cannot be honoured."""
    _refuse(task)
    tags = dict(task.tags or {})
    bad = [k for k, v in tags.items() if not 0 < len(k) <= MAX_TAG_KEY or len(v) > MAX_TAG_VALUE]
    if bad:
        raise GatewayError(f"tags: keys of 1 to {MAX_TAG_KEY} characters and values of at most "
                           f"{MAX_TAG_VALUE}; not {bad[0][:50]!r}")
    command = shlex.join(task.executors[0].command)
    if len(command) > MAX_COMMAND:
        raise GatewayError(f"the command is {len(command)} characters quoted; at most {MAX_COMMAND}")
    res = task.resources or TesResources()
    params = dict(res.backend_parameters or {})
    backend = tuple(sorted((k, v) for k, v in params.items() if k not in BACKEND_PARAMETERS))
    nodes = _number(params, "nodes", int, MAX_NODES) if "nodes" in params else 1
    hours = _number(params, "walltime_hours", float, MAX_HOURS) if "walltime_hours" in params else 1.0
    return JobRequest(command=command, title=task.name or "", project=tags.get("project"),
                      nodes=nodes, cores_per_node=res.cpu_cores or 1, walltime_hours=hours,
                      tags=tuple(sorted(tags.items())), memory_gb=res.ram_gb or None, backend=backend,
                      backend_strict=bool(res.backend_parameters_strict))


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - LOG_LIMIT))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _task(job: dict[str, Any], view: View, settings: Settings) -> TaskOut:
    state = TesState(STATES[JobState(job["state"])])
    if view == View.MINIMAL:
        return TaskOut(id=job["id"], state=state)
    tags = dict(job.get("tags") or {})
    log = ExecutorLogOut(start_time=job["started"], end_time=job["ended"], exit_code=job["exit_code"])
    if view == View.FULL and job["started"] is not None:
        log.stdout = _tail(log_file(settings, job["id"], "stdout"))
        log.stderr = _tail(log_file(settings, job["id"], "stderr"))
    try:
        argv = shlex.split(job["command"])
    except ValueError:
        argv = [job["command"]]
    return TaskOut(
        id=job["id"], state=state, name=job["title"] or None, tags=tags, creation_time=job["submitted"],
        resources={"cpu_cores": job["cores_per_node"], "ram_gb": job["memory_gb"],
                   "backend_parameters": {**job["backend_parameters"], "nodes": str(job["nodes"]),
                                          "walltime_hours": str(job["walltime_hours"])}},
        executors=[{"image": "", "command": argv}],
        logs=[TaskLogOut(logs=[log], start_time=job["started"], end_time=job["ended"],
                         metadata={"project": job["project_name"], "system": job["system"]})],
    )


def tes_router(scope: Callable[[str], Callable[..., Awaitable[Principal]]],
               store_dep: Callable[..., Awaitable[GatewayStore]],
               check_dep: Callable[..., Awaitable[SystemCheck]]) -> APIRouter:
    """The TES routes; ``scope``, ``store_dep`` and ``check_dep`` (the HPC systems' limits) are
    the dependencies of :mod:`corral.gateway.app`."""
    router = APIRouter(prefix=TES, tags=["tes"])
    Reader = Annotated[Principal, Depends(scope("jobs:read"))]
    Writer = Annotated[Principal, Depends(scope("jobs:write"))]
    Store = Annotated[GatewayStore, Depends(store_dep)]
    Check = Annotated[SystemCheck, Depends(check_dep)]

    def settings(request: Request) -> Settings:
        found: Settings = request.app.state.settings
        return found

    @router.get("/service-info")
    def service_info(request: Request) -> ServiceInfoOut:
        """What this TES service is (no token needed)."""
        return ServiceInfoOut(
            id="org.corral.gateway", name="Corral gateway", description="GA4GH TES on the Corral gateway's jobs",
            type={"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
            organization={"name": "Corral gateway", "url": str(request.base_url)}, version="0.1", storage=[],
            tesResources_backend_parameters=sorted({*BACKEND_PARAMETERS, *(
                key for system in request.app.state.systems.values() for key in system.backend_keys)}))

    @router.post("/tasks")
    def create_task(task: TesTaskIn, who: Writer, store: Store, check: Check) -> CreateTaskOut:
        """Queue a task as a command job (``tags["project"]`` picks the project; ``nodes`` and
        ``walltime_hours`` in ``resources.backend_parameters``)."""
        try:
            req = _request(task)
            job = store.submit(who, req, check)
        except NotFound as exc:
            raise GatewayError(f"tags.project: {exc}") from exc
        return CreateTaskOut(id=job["id"])

    @router.get("/tasks")
    def list_tasks(who: Reader, store: Store, request: Request,
                   view: View = View.MINIMAL, page_size: Annotated[int, Query(ge=1, le=2048)] = 256,
                   page_token: Annotated[str | None, Query(max_length=12)] = None,
                   name_prefix: Annotated[str | None, Query(max_length=500)] = None,
                   tag_key: Annotated[list[str] | None, Query()] = None,
                   tag_value: Annotated[list[str] | None, Query()] = None) -> ListTasksOut:
        """The caller's tasks, newest first; ``next_page_token`` while there are more."""
        offset = 0
        if page_token:
            if not page_token.isdigit():
                raise GatewayError(f"bad page_token {page_token!r}")
            offset = int(page_token)
        keys, values = tag_key or [], tag_value or []
        if len(values) > len(keys):
            raise GatewayError("more tag_value than tag_key parameters")
        tags = [(k, values[i] if i < len(values) and values[i] != "" else None) for i, k in enumerate(keys)]
        rows = store.list_own_jobs(who.user_id, limit=page_size + 1, offset=offset, name_prefix=name_prefix,
                                   tags=tags)
        more = len(rows) > page_size
        tasks = [_task(job, view, settings(request)) for job in rows[:page_size]]
        return ListTasksOut(tasks=tasks, next_page_token=str(offset + page_size) if more else None)

    @router.get("/tasks/{task_id}")
    def get_task(task_id: str, who: Reader, store: Store, request: Request,
                 view: View = View.MINIMAL) -> TaskOut:
        """One of the caller's tasks; another user's answers 404."""
        return _task(store.get_job_with_tags(who, task_id), view, settings(request))

    @router.post("/tasks/{task_id}:cancel")
    def cancel_task(task_id: str, who: Writer, store: Store) -> dict[str, Any]:
        """Cancel a task: a queued one at once, a running one goes to CANCELING; an ended one is left."""
        if store.get_job_with_tags(who, task_id)["state"] not in TERMINAL_JOB_STATES:
            try:
                store.cancel(who, task_id)
            except GatewayError as exc:
                if exc.status != 409:  # ended meanwhile: nothing to cancel
                    raise
        return {}

    return router
