"""Metrics ingestion routes of ``/api/v1``: ``corral run ... --report-to URL --token T`` reports a
run (description, progress, final state and per-task metrics) with ``PUT /reports/{run_id}``, so
pipelines run anywhere show up next to the gateway's own jobs; ``GET /reports`` and
``GET /reports/{run_id}`` read them back (owner, project members, admins; anyone else: 404).

A report is idempotent (the same one twice changes nothing) and never moves a run out of an ended
state. Sizes are bounded: over :data:`MAX_BODY_BYTES` or :data:`MAX_TASKS_PER_REPORT` tasks the
answer is 413 with a one-line message.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, which name
dependency types built in :mod:`corral.gateway.app` and passed in.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from corral.states import RunState, TaskState

from .store import GatewayStore
from .store.ingest import MAX_TASKS_PER_REPORT, PayloadTooLarge, RunReport, TaskReport

API = "/api/v1"
MAX_BODY_BYTES = 2 * 1024 * 1024
"""A report's body, at most (1,000 tasks take about 200 kB)."""

RunId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]


class TaskIn(BaseModel):
    """One task's metrics: of its last attempt (wall and CPU seconds, peak memory in bytes)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=300)
    """Unique within the run (a map's elements: ``name[i]``)."""
    state: TaskState
    wall: float | None = Field(default=None, ge=0)
    cpu: float | None = Field(default=None, ge=0)
    peak_memory: int | None = Field(default=None, ge=0, le=2**63 - 1)  # bytes; a BIGINT column
    host: str | None = Field(default=None, max_length=200)
    exit_code: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    attempts: int = Field(default=0, ge=0, le=1_000_000)


class ReportIn(BaseModel):
    """A run's description and progress, and (optionally) a batch of its tasks."""

    model_config = ConfigDict(extra="forbid")
    pipeline: str = Field(min_length=1, max_length=200)
    executor: str = Field(min_length=1, max_length=100)
    project: str | None = Field(default=None, min_length=1, max_length=200)
    """A project of the caller's: its members see the run too."""
    state: RunState
    counts: dict[TaskState, Annotated[int, Field(ge=0, le=1_000_000_000)]] = Field(default_factory=dict)
    """Tasks in each state."""
    started: datetime | None = None
    ended: datetime | None = None
    tasks: list[TaskIn] = Field(default_factory=list)
    """At most MAX_TASKS_PER_REPORT a report (413 over it): send more in several reports."""

    def report(self, run_id: str) -> RunReport:
        tasks = tuple(TaskReport(t.name, t.state, t.wall, t.cpu, t.peak_memory, t.host, t.exit_code, t.attempts)
                      for t in self.tasks)
        return RunReport(run_id, self.pipeline, self.executor, self.state, dict(self.counts), self.project,
                         self.started, self.ended, tasks)


class ReportPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


async def _bounded(request: Request) -> None:
    """413 for a body declared over :data:`MAX_BODY_BYTES`."""
    size = request.headers.get("content-length", "0")
    if not size.isdigit() or int(size) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"report of {size} bytes, over the limit of {MAX_BODY_BYTES} bytes: "
                              f"send the tasks in batches of at most {MAX_TASKS_PER_REPORT}")


def ingest_router(Writer: Any, Reader: Any, Store: Any) -> APIRouter:
    """The routes; ``Writer``, ``Reader`` and ``Store`` are the dependencies of :mod:`corral.gateway.app`."""
    router = APIRouter(prefix=API)

    @router.put("/reports/{run_id}", tags=["reports"], dependencies=[Depends(_bounded)],
                responses={413: {"description": "Over the size limit of one report"}})
    def report_run(run_id: RunId, body: ReportIn, who: Writer, store: Store) -> dict[str, Any]:
        """Report a run of ``corral run`` (created on its first report): its state, counts of tasks
        by state, times, and a batch of per-task metrics. Idempotent; a run that ended stays ended."""
        s: GatewayStore = store
        return s.report_run(who, body.report(run_id))

    @router.get("/reports", tags=["reports"])
    def list_reports(who: Reader, store: Store, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                     offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> ReportPage:
        """Reported runs the caller may see (own, of the caller's projects; all for an admin), newest first."""
        s: GatewayStore = store
        items, total = s.list_reports(who, limit=limit, offset=offset)
        return ReportPage(items=items, total=total, limit=limit, offset=offset)

    @router.get("/reports/{run_id}", tags=["reports"])
    def get_report(run_id: RunId, who: Reader, store: Store) -> dict[str, Any]:
        """One reported run with its tasks' metrics; another user's run answers 404."""
        s: GatewayStore = store
        return s.get_report(who, run_id)

    return router
