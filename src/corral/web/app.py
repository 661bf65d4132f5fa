"""The dashboard of one user's local Corral state (``corral ui``): ``create_app(workdir, db)``.

Routes: ``/`` the runs list (filters, search, paging; ``/events`` follows its live runs), and per
run ``/runs/{id}`` (graph, timeline, resources, failures, ``why``, lineage; ``/events``),
``/runs/{id}/control`` (pause, resume, cancel: a confirmation page, then a POST carrying the
server's form secret), ``/runs/{id}/report.html`` and ``/runs/{id}/ro-crate.zip``. Runs are
controlled through :class:`corral.api.RunHandle`, as ``corral pause/resume/cancel`` do.

It serves 127.0.0.1 only and has no login: whoever can reach the port is the user whose state it
shows. The form secret keeps other web pages open in the same browser from posting controls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from corral.api import RunHandle
from corral.errors import CorralError, RunNotFound, UsageError
from corral.store.store import Store

from . import render, views

PACKAGES = ("corral.web",)


def _error(request: Request, exc: CorralError) -> Response:
    status = 404 if isinstance(exc, RunNotFound) else 400
    return render.page(request, "error.html.j2", status=status, message=str(exc), title="Error")


def create_app(workdir: Path, db: str | None = None, store: Store | None = None) -> FastAPI:
    """The dashboard of ``workdir``'s state store (or of the database ``db``)."""
    workdir = workdir.resolve()
    store = store or Store.open(workdir, db)
    secret = render.new_secret()
    app = FastAPI(title="Corral dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.secret, app.state.workdir = store, secret, workdir

    @app.exception_handler(CorralError)
    async def corral_error(request: Request, exc: CorralError) -> Response:
        return _error(request, exc)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return render.static_response(name)

    @app.get("/")
    def runs(request: Request, state: Annotated[list[str] | None, Query()] = None) -> Response:
        q = views.ListQuery.parse(request.query_params, [s for s in state or [] if s])
        ctx = views.runs_list(store, q)
        keep = [(k, v) for k, v in request.query_params.multi_items() if k != "page" and v]
        page_url = "?" + urlencode(keep) + ("&" if keep else "")
        return render.page(request, "runs.html.j2", title="Runs", workdir=str(workdir), page_url=page_url, **ctx)

    @app.get("/events")
    def runs_events(request: Request, run: Annotated[list[str] | None, Query()] = None) -> StreamingResponse:
        ids = (run or [])[:views.PAGE_SIZE]
        return render.event_stream(request, lambda: views.runs_snapshot(store, ids),
                                   lambda snap: not snap["following"])

    _run_routes(app, store, workdir, secret)
    return app


def _run_routes(app: FastAPI, store: Store, workdir: Path, secret: str) -> None:
    @app.get("/runs/{run_id}")
    def run(request: Request, run_id: str, why: str = "", lineage: str = "", done: str = "") -> Response:
        ctx = views.run_view(store, workdir, run_id, why, lineage, done)
        return render.page(request, "run.html.j2", title=f"Run {ctx['run']['id']}", **ctx)

    @app.get("/runs/{run_id}/events")
    def run_events(request: Request, run_id: str) -> StreamingResponse:
        rid = store.get_run(run_id)["id"]
        return render.event_stream(request, lambda: views.run_snapshot(store, rid),
                                   lambda snap: bool(snap["ended"]))

    @app.get("/runs/{run_id}/control")
    def confirm(request: Request, run_id: str, action: str) -> Response:
        run_row = store.get_run(run_id)
        if action not in views.controls(run_row["state"]):
            raise UsageError(f"a {run_row['state']} run cannot {action}; go back to the run's page")
        return render.page(request, "confirm.html.j2", title=f"{views.CONTROLS[action]} run",
                           run=run_row, action=action, label=views.CONTROLS[action], secret=secret)

    @app.post("/runs/{run_id}/control")
    def control(run_id: str, action: Annotated[str, Form()], token: Annotated[str, Form()]) -> Response:
        if not render.same_secret(token, secret):
            raise UsageError("the form has expired (the dashboard restarted); reload the run's page")
        handle = RunHandle(store, str(store.get_run(run_id)["id"]))
        if action not in views.controls(handle.state):
            raise UsageError(f"a {handle.state.value} run cannot {action}; go back to the run's page")
        {"pause": handle.pause, "resume": handle.resume, "cancel": handle.cancel}[action]()
        return RedirectResponse(f"/runs/{quote(handle.run_id)}?done={action}", status_code=303)

    @app.get("/runs/{run_id}/report.html")
    def report(run_id: str) -> Response:
        body, name = views.report_download(store, run_id)
        return Response(body, media_type="text/html", headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/runs/{run_id}/ro-crate.zip")
    def crate(run_id: str) -> Response:
        body, name = views.crate_download(store, run_id)
        return Response(body, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
