"""The jobs pages: a user's jobs (an admin's view of everyone's), one job (history, timeline,
progress by server-sent events, output, result files, cancel), and the submit form."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from corral.errors import CorralError
from corral.report import units
from corral.web import render
from corral.web.views import ENDED_TASK_STATES

from ..files import attachment_headers, list_files, resolve
from ..pipelines import RUN_PREFIX, PipelineRuns
from ..runner import job_dir, log_file
from ..settings import Settings
from ..store import TERMINAL_JOB_STATES, GatewayError, JobState
from . import forms
from .auth import Caller, caller, check_form, page, store_of

PAGE_SIZE = 50
MAX_FILES_SHOWN = 500
LOG_TAIL_BYTES = 64 * 1024


def jobdir(request: Request, job_id: str) -> Path:
    settings: Settings = request.app.state.settings
    return job_dir(settings, job_id)


def tail(path: Path) -> str | None:
    """The end of a log (its last 64 KB), or None before it exists."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - LOG_TAIL_BYTES))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    return ("…\n" if size > LOG_TAIL_BYTES else "") + text


def output(request: Request, job_id: str, stream: str) -> str | None:
    settings: Settings = request.app.state.settings
    return tail(log_file(settings, job_id, stream))


def _parse(iso: str | None) -> datetime | None:
    return None if not iso else datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=UTC)


def timeline(job: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The job's life as spans (queued, running) for the timeline, and its state history."""
    submitted, started, ended = (_parse(job.get(k)) for k in ("submitted", "started", "ended"))
    now = datetime.now(UTC)
    end = ended or now
    total = max((end - submitted).total_seconds(), 1e-6) if submitted else 1.0
    spans = []
    if submitted:
        queued_to = started or ended or now
        spans.append(("queued", (queued_to - submitted).total_seconds()))
    if started:
        spans.append(("running" if ended is None else "ended", (end - started).total_seconds()))
    return {"spans": [{"kind": k, "seconds": s, "percent": 100 * s / total} for k, s in spans],
            "history": history}


def pipeline_run(request: Request, job: dict[str, Any]) -> dict[str, Any] | None:
    """A pipeline job's run and its tasks (no run yet: ``run`` None); None for a command job."""
    if job.get("pipeline") is None:
        return None
    if not (job.get("native_id") or "").startswith(RUN_PREFIX):
        return {"run": None, "state": None, "tasks": []}
    try:
        return PipelineRuns.tasks(job, jobdir(request, job["id"]))
    except CorralError as exc:  # its store not readable (yet): shown as no run, with why
        return {"run": None, "state": None, "tasks": [], "error": str(exc)}


def snapshot(job: dict[str, Any], run: dict[str, Any] | None = None) -> dict[str, Any]:
    """The live part of a job's page: its state, and its progress (tasks ended of all for a
    pipeline job with a run; runtime of the walltime otherwise)."""
    runtime = job.get("runtime")
    walltime = float(job.get("walltime_hours") or 0) * 3600
    ended = job["state"] in TERMINAL_JOB_STATES
    done, total = int(runtime or 0) if not ended else int(walltime or 1), int(walltime or 1)
    if run is not None:
        done, total = sum(t["state"] in ENDED_TASK_STATES for t in run["tasks"]), len(run["tasks"])
    return {"id": job["id"], "state": job["state"], "ended": ended, "done": done, "total": total,
            "duration": runtime, "duration_text": units.duration(runtime)}


def live(request: Request, user: Caller, job_id: str) -> dict[str, Any]:
    job = find_job(request, user, job_id)
    return snapshot(job, pipeline_run(request, job))


def find_job(request: Request, user: Caller, job_id: str) -> dict[str, Any]:
    """A job the caller may see (their own, their projects', any for an admin); another answers 404."""
    return store_of(request).get_job(None if user.admin else user.who, job_id)


def install(app: FastAPI) -> None:
    @app.get("/jobs", include_in_schema=False)
    def jobs_list(request: Request, state: str = "") -> Response:
        return _list(request, caller(request), state, request.query_params.get("page", "1"), None)

    @app.get("/admin/jobs", include_in_schema=False)
    def admin_jobs(request: Request, state: str = "", user: str = "") -> Response:
        who = caller(request)
        if not who.admin:
            return page(request, "message.html.j2", who, status=403, title="Admins only",
                        message="this page is for admins (the admin role and a token with the admin scope)")
        return _list(request, who, state, request.query_params.get("page", "1"), user.strip())

    @app.get("/jobs/new", include_in_schema=False)
    def new_job(request: Request) -> Response:
        user = caller(request)
        return forms.form_page(request, user, forms.JobForm.empty(), {})

    @app.post("/jobs/new", include_in_schema=False)
    async def submit(request: Request) -> Response:
        user = caller(request)
        data = await request.form()
        check_form(user, str(data.get("token", "")))
        form = forms.JobForm.from_data({k: str(v) for k, v in data.items()})
        job, errors = forms.submit(request, user, form)
        if job is None:
            return forms.form_page(request, user, form, errors)  # the form again, its errors beside the fields
        return RedirectResponse(f"/jobs/{quote(job['id'])}", status_code=303)

    _job_routes(app)


def _list(request: Request, user: Caller, state: str, raw_page: str, owner: str | None) -> Response:
    states = [s.value for s in JobState]
    if state and state not in states:
        return page(request, "message.html.j2", user, status=400, title="Jobs",
                    message=f"unknown job state {state!r}; use one of {', '.join(states)}")
    if not raw_page.isdigit() or int(raw_page) < 1:
        return page(request, "message.html.j2", user, status=400, title="Jobs",
                    message=f"page must be a whole number from 1, not {raw_page!r}")
    number = int(raw_page)
    viewer = None if owner is not None else user.who.user_id  # a user's own and their projects' jobs
    items, total = store_of(request).list_jobs(None, limit=PAGE_SIZE, offset=(number - 1) * PAGE_SIZE,
                                               state=state or None, owner=owner or None, viewer=viewer)
    keep = {k: v for k, v in (("state", state), ("user", owner or "")) if v}
    return page(request, "jobs.html.j2", user, title="All jobs" if owner is not None else "Jobs",
                jobs=items, total=total, page=number, pages=max(1, -(-total // PAGE_SIZE)), state=state,
                states=states, admin_view=owner is not None, owner=owner or "",
                page_url="?" + urlencode(keep) + ("&" if keep else ""),
                following=any(j["state"] not in TERMINAL_JOB_STATES for j in items))


def _job_routes(app: FastAPI) -> None:
    @app.get("/jobs/{job_id}", include_in_schema=False)
    def job_page(request: Request, job_id: str, done: str = "") -> Response:
        user = caller(request)
        try:
            job = find_job(request, user, job_id)
        except GatewayError as exc:
            return page(request, "message.html.j2", user, status=exc.status, title="No such job", message=str(exc))
        history = store_of(request).history(None if user.admin else user.who, job["id"])
        run = pipeline_run(request, job)
        return page(request, "job.html.j2", user, title=f"Job {job['title'] or job['id']}", job=job,
                    live=snapshot(job, run), run=run, timeline=timeline(job, history),
                    stdout=output(request, job["id"], "stdout"), stderr=output(request, job["id"], "stderr"),
                    files=list_files(jobdir(request, job["id"]))[:MAX_FILES_SHOWN], done=done == "cancel",
                    following=job["state"] not in TERMINAL_JOB_STATES)

    @app.get("/jobs/{job_id}/events", include_in_schema=False)
    def job_events(request: Request, job_id: str) -> StreamingResponse:
        user = caller(request)
        find_job(request, user, job_id)
        return render.event_stream(request, lambda: live(request, user, job_id), lambda snap: bool(snap["ended"]))

    @app.get("/jobs/{job_id}/files/{name:path}", include_in_schema=False)
    def job_file(request: Request, job_id: str, name: str) -> Response:
        user = caller(request)
        job = find_job(request, user, job_id)
        found = resolve(jobdir(request, job["id"]), name)  # the API's confinement to the job's directory
        return FileResponse(found, media_type="application/octet-stream", headers=attachment_headers(found))

    @app.get("/jobs/{job_id}/cancel", include_in_schema=False)
    def confirm_cancel(request: Request, job_id: str) -> Response:
        user = caller(request)
        job = find_job(request, user, job_id)
        if job["owner"] != user.who.name:  # a project's other members read its jobs, only the owner cancels
            return page(request, "message.html.j2", user, status=403, title="Cancel job",
                        message=f"only the job's owner ({job['owner']}) can cancel job {job['id']}")
        return page(request, "cancel.html.j2", user, title="Cancel job", job=job)

    @app.post("/jobs/{job_id}/cancel", include_in_schema=False)
    def cancel(request: Request, job_id: str, token: Annotated[str, Form()] = "") -> Response:
        user = caller(request)
        check_form(user, token)
        if "jobs:write" not in user.who.scopes:
            raise GatewayError("this token lacks the jobs:write scope: it cannot cancel jobs")
        job = store_of(request).cancel(user.who, job_id)
        return RedirectResponse(f"/jobs/{quote(job['id'])}?done=cancel", status_code=303)
