"""What every page of the dashboard and of the gateway's pages shares: one Jinja2 environment over
this package's templates (and those of the caller's package), units for people, the static
assets shipped in the package, and server-sent events.

Pages are plain HTML rendered on the server; ``static/dashboard.js`` (no framework, no build step)
draws the Plotly figures, follows the event streams and asks before a destructive action. Nothing
is fetched from outside the server: Plotly's JavaScript is served from the installed plotly
package, so the pages work on an air-gapped login node.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import functools
import json
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from corral.optional import require
from corral.report.units import duration, percent

STATIC_DIR = Path(__file__).with_name("static")
EVENT_POLL_SECONDS = 1.0
"""How often an event stream looks at the store for a change."""
EVENT_MAX_SECONDS = 3600.0
"""An event stream ends after this long (the page's script then reconnects)."""


def when(unix: float | None) -> str:
    """Local date and time of a UNIX time, to the second; ``-`` when unknown."""
    if unix is None:
        return "-"
    return _dt.datetime.fromtimestamp(float(unix)).strftime("%Y-%m-%d %H:%M:%S")


def size(nbytes: float | None) -> str:
    if nbytes is None:
        return "-"
    value = float(nbytes)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return "-"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


@functools.cache
def environment(*packages: str) -> jinja2.Environment:
    """The templates of ``packages`` (searched first) and of this one, autoescaped."""
    loaders = [jinja2.PackageLoader(p, "templates") for p in (*packages, "corral.web")]
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(duration=duration, when=when, size=size, percent=percent, number=number)
    return env


def page(request: Request, template: str, status: int = 200, packages: tuple[str, ...] = (),
         **context: Any) -> HTMLResponse:
    """A rendered page; every template sees ``request`` and ``root`` (the app's mount path)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    html = environment(*packages).get_template(template).render(request=request, root=root, **context)
    return HTMLResponse(html, status_code=status)


@functools.cache
def plotly_js() -> bytes:
    """Plotly's JavaScript from the installed plotly package (a dependency of every install)."""
    offline = require("plotly.offline", "the dashboard's figures", None)
    text: str = offline.get_plotlyjs()
    return text.encode()


def static_response(name: str) -> Response:
    """A file of ``static/`` (or Plotly's JavaScript); 404 for anything else."""
    if name == "plotly.min.js":
        return Response(plotly_js(), media_type="text/javascript",
                        headers={"Cache-Control": "max-age=86400"})
    types = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
    path = STATIC_DIR / name
    if "/" in name or path.suffix not in types or not path.is_file():
        return Response("no such file", status_code=404, media_type="text/plain")
    return Response(path.read_bytes(), media_type=types[path.suffix],
                    headers={"Cache-Control": "max-age=300"})


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def same_secret(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def event_stream(request: Request, snapshot: Callable[[], Mapping[str, Any]],
                 finished: Callable[[Mapping[str, Any]], bool]) -> StreamingResponse:
    """Server-sent events: ``snapshot()`` (run in a worker thread) as one ``update`` event each
    time it changes, then a ``done`` event once ``finished(snapshot)``: the page's script closes
    the stream on ``done`` (an ``EventSource`` would otherwise reconnect)."""

    async def events() -> AsyncIterator[str]:
        last: str | None = None
        loop = asyncio.get_running_loop()
        ends = loop.time() + EVENT_MAX_SECONDS
        while loop.time() < ends and not await request.is_disconnected():
            data = await run_in_threadpool(snapshot)
            text = json.dumps(data, default=str, separators=(",", ":"))
            if text != last:
                last = text
                yield f"event: update\ndata: {text}\n\n"
            if finished(data):
                yield "event: done\ndata: {}\n\n"
                return
            await asyncio.sleep(EVENT_POLL_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
