"""Login with an API token, cookie sessions, and what a page needs of its caller.

A session is a random id in an HttpOnly, SameSite=Strict cookie; the server keeps its token in
memory (sessions end when the gateway restarts) with a form secret that every POST must carry.
Every request checks the token again through :meth:`GatewayStore.authenticate`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response

from corral.web import render

from ..store import GatewayError, GatewayStore, Principal

COOKIE = "corral_session"
SESSION_SECONDS = 12 * 3600.0
MAX_SESSIONS = 10_000
PACKAGES = ("corral.gateway.pages",)


@dataclass(frozen=True)
class Session:
    token: str
    secret: str
    expires: float


class Sessions:
    """Sessions by id, in memory; the oldest go first when there are too many."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, token: str) -> tuple[str, Session]:
        sid = render.new_secret()
        session = Session(token, render.new_secret(), time.time() + SESSION_SECONDS)
        with self._lock:
            if len(self._by_id) >= MAX_SESSIONS:
                oldest = min(self._by_id, key=lambda k: self._by_id[k].expires)
                del self._by_id[oldest]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        with self._lock:
            session = self._by_id.get(sid or "")
            if session is not None and session.expires < time.time():
                del self._by_id[sid or ""]
                return None
            return session

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


@dataclass(frozen=True)
class Caller:
    """The logged-in user of a page request."""

    who: Principal
    secret: str

    @property
    def admin(self) -> bool:
        return self.who.role == "admin" and "admin" in self.who.scopes


class LoginNeeded(Exception):
    """Raised by :func:`caller` without a valid session: the app redirects to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def store_of(request: Request) -> GatewayStore:
    store: GatewayStore = request.app.state.store
    return store


def caller(request: Request) -> Caller:
    """The session's user (its token checked again now), or :class:`LoginNeeded`."""
    sessions: Sessions = request.app.state.page_sessions
    sid = request.cookies.get(COOKIE)
    session = sessions.get(sid)
    if session is not None:
        try:
            who = store_of(request).authenticate(session.token)
        except GatewayError:
            sessions.end(sid)
        else:
            return Caller(who, session.secret)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    raise LoginNeeded(target)


def check_form(user: Caller, token: str | None) -> None:
    if not render.same_secret(token, user.secret):
        raise GatewayError("the form has expired (log in again, then send it again)")


def page(request: Request, template: str, user: Caller | None, status: int = 200, **context: Any) -> Response:
    return render.page(request, template, status=status, packages=PACKAGES, user=user, **context)


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/jobs"


def install(app: FastAPI) -> None:
    app.state.page_sessions = Sessions()

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return render.static_response(name)

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/jobs", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/jobs") -> Response:
        return page(request, "login.html.j2", None, title="Log in", next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/jobs") -> Response:
        error = None
        if not token.strip():
            error = "enter an API token (corral gateway token create USER prints one)"
        else:
            try:
                who = store_of(request).authenticate(token.strip())
                if "jobs:read" not in who.scopes:
                    error = "this token lacks the jobs:read scope; create one with it"
            except GatewayError as exc:
                error = f"{exc}; check the token, or ask an admin for a new one"
        if error:
            return page(request, "login.html.j2", None, title="Log in", next=_safe_next(next),
                        error=error)
        sid, _ = request.app.state.page_sessions.start(token.strip())
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(COOKIE, sid, max_age=int(SESSION_SECONDS), httponly=True, samesite="strict")
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        request.app.state.page_sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response
