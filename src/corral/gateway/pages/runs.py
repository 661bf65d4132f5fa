"""A pipeline job's run on the gateway's pages: the run page of ``corral ui`` (graph, timeline,
resources, failures, ``why``, lineage, the report and RO-Crate downloads), drawn by the same code
(:func:`corral.web.views.run_view`) from the run store in the job's directory, behind the job's
access check. The run is controlled through its job (cancel), so the page offers no run controls."""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from corral.store.store import Store
from corral.web import render, views

from ..pipelines import RUN_PREFIX
from ..store import NotFound
from .auth import Caller, caller, page
from .jobs import find_job, jobdir

STORES_KEPT = 32
"""Run stores of pipeline jobs kept open (the most recently viewed)."""


class RunStores:
    """The open run stores of pipeline jobs' directories, the least recently used closed first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: OrderedDict[Path, Store] = OrderedDict()

    def get(self, directory: Path) -> Store:
        with self.lock:
            store = self.open.get(directory)
            if store is None:
                store = self.open[directory] = Store.open(directory)
            self.open.move_to_end(directory)
            while len(self.open) > STORES_KEPT:
                self.open.popitem(last=False)[1].close()
            return store


def run_of(request: Request, user: Caller, job_id: str, run_id: str) -> tuple[dict[str, Any], Store]:
    """The job (one the caller may see) and its run's store; 404 unless ``run_id`` is its run."""
    job = find_job(request, user, job_id)
    if job.get("pipeline") is None or (job.get("native_id") or "") != RUN_PREFIX + run_id:
        raise NotFound(f"job {job_id} has no run {run_id}")
    stores: RunStores = request.app.state.run_stores
    return job, stores.get(jobdir(request, job["id"]))


def install(app: FastAPI) -> None:
    app.state.run_stores = RunStores()

    @app.get("/jobs/{job_id}/runs/{run_id}", include_in_schema=False)
    def run_page(request: Request, job_id: str, run_id: str, why: str = "", lineage: str = "") -> Response:
        user = caller(request)
        job, store = run_of(request, user, job_id, run_id)
        ctx = views.run_view(store, jobdir(request, job["id"]), run_id, why, lineage)
        ctx["controls"] = []  # the run is cancelled through its job
        return page(request, "run.html.j2", user, title=f"Run {run_id} of job {job['title'] or job['id']}",
                    layout="gw_base.html.j2", runs_url=f"/jobs/{job['id']}/runs", job=job, **ctx)

    @app.get("/jobs/{job_id}/runs/{run_id}/events", include_in_schema=False)
    def run_events(request: Request, job_id: str, run_id: str) -> StreamingResponse:
        _, store = run_of(request, caller(request), job_id, run_id)
        return render.event_stream(request, lambda: views.run_snapshot(store, run_id),
                                   lambda snap: bool(snap["ended"]))

    @app.get("/jobs/{job_id}/runs/{run_id}/report.html", include_in_schema=False)
    def report(request: Request, job_id: str, run_id: str) -> Response:
        _, store = run_of(request, caller(request), job_id, run_id)
        body, name = views.report_download(store, run_id)
        return Response(body, media_type="text/html", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/jobs/{job_id}/runs/{run_id}/ro-crate.zip", include_in_schema=False)
    def crate(request: Request, job_id: str, run_id: str) -> Response:
        _, store = run_of(request, caller(request), job_id, run_id)
        body, name = views.crate_download(store, run_id)
        return Response(body, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
