"""Admin routes of ``/api/v1``: create and update projects, set per-user quotas, read the audit
log; and quotas for project members. Every change is written to the audit log with the admin's
name (by the store, in the change's own transaction).

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, which name
dependency types built in :mod:`corral.gateway.app` and passed in.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from .store import GatewayError, GatewayStore, NotFound

API = "/api/v1"


class ProjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    budget_core_hours: float = Field(ge=0, le=1e12)
    system: str = Field(default="local", min_length=1, max_length=100)
    max_concurrent_jobs: int = Field(default=10, ge=1, le=1_000_000)
    members: list[str] = Field(default_factory=list, max_length=100)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget_core_hours: float | None = Field(default=None, ge=0, le=1e12)
    system: str | None = Field(default=None, min_length=1, max_length=100)
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=1_000_000)
    add_members: list[str] = Field(default_factory=list, max_length=100)
    remove_members: list[str] = Field(default_factory=list, max_length=100)


class QuotaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget_core_hours: float = Field(ge=0, le=1e12)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(default_factory=list, max_length=3)
    """Default: jobs:read and jobs:write (every scope with ``admin``)."""
    admin: bool = False
    """Make the user an admin."""
    expires_days: float | None = Field(default=None, gt=0, le=3650)


class TokenOut(BaseModel):
    token: str
    """The token, shown this once (the gateway keeps its SHA-256)."""


class AuditPage(BaseModel):
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int


def _known_system(request: Request, system: str | None) -> None:
    systems = request.app.state.systems
    if system is not None and system not in systems:
        raise GatewayError(f"no HPC system {system!r} on this gateway; systems: {', '.join(sorted(systems))}")


def admin_router(Admin: Any, Reader: Any, Store: Any) -> APIRouter:
    """The routes; ``Admin``, ``Reader`` and ``Store`` are the dependencies of :mod:`corral.gateway.app`."""
    router = APIRouter(prefix=API)

    @router.post("/admin/projects", status_code=201, tags=["admin"])
    def create_project(body: ProjectIn, who: Admin, store: Store, request: Request) -> dict[str, Any]:
        """Create a project on an HPC system with a core-hour budget (audited)."""
        _known_system(request, body.system)
        s: GatewayStore = store
        s.create_project(body.name, body.budget_core_hours, system=body.system,
                         max_concurrent_jobs=body.max_concurrent_jobs, members=body.members, actor=who.name)
        return s.get_project(who, body.name)

    @router.patch("/admin/projects/{name}", tags=["admin"])
    def update_project(name: str, body: ProjectUpdate, who: Admin, store: Store,
                       request: Request) -> dict[str, Any]:
        """Change a project's budget, concurrent-job limit, HPC system or members (audited)."""
        _known_system(request, body.system)
        s: GatewayStore = store
        s.update_project(who.name, name, budget_core_hours=body.budget_core_hours,
                         max_concurrent_jobs=body.max_concurrent_jobs, system=body.system,
                         add_members=body.add_members, remove_members=body.remove_members)
        return s.get_project(who, name)

    @router.get("/projects/{name}/quotas", tags=["projects"])
    def project_quotas(name: str, who: Reader, store: Store) -> list[dict[str, Any]]:
        """The per-user quotas of a project: the caller's own (every member's for an admin)."""
        s: GatewayStore = store
        s.get_project(who, name)  # 404 unless a member (or an admin)
        return s.quotas(name, None if who.role == "admin" else who.name)

    @router.put("/admin/projects/{name}/quotas/{user}", tags=["admin"])
    def set_quota(name: str, user: str, body: QuotaIn, who: Admin, store: Store) -> dict[str, Any]:
        """Set a member's core-hour quota inside the project (audited)."""
        s: GatewayStore = store
        return s.set_quota(who.name, name, user, body.budget_core_hours)

    @router.get("/admin/users", tags=["admin"])
    def list_users(who: Admin, store: Store) -> list[dict[str, Any]]:
        """Every user with role and number of usable tokens."""
        s: GatewayStore = store
        return s.list_users()

    @router.get("/admin/users/{user}/tokens", tags=["admin"])
    def list_tokens(user: str, who: Admin, store: Store) -> list[dict[str, Any]]:
        """A user's tokens (prefixes, scopes, expiry, revoked; never the tokens)."""
        s: GatewayStore = store
        return s.list_tokens(user)

    @router.post("/admin/tokens", status_code=201, tags=["admin"])
    def create_token(body: TokenIn, who: Admin, store: Store) -> TokenOut:
        """Create a token for a user (created if new), shown once (audited)."""
        s: GatewayStore = store
        return TokenOut(token=s.create_token(body.user, body.scopes or None, admin=body.admin,
                                             expires_days=body.expires_days, actor=who.name))

    @router.delete("/admin/tokens/{prefix}", tags=["admin"])
    def revoke_token(prefix: str, who: Admin, store: Store) -> dict[str, int]:
        """Revoke the tokens with this listed prefix (first 10 characters; audited); 404 if none."""
        s: GatewayStore = store
        count = s.revoke_token(prefix, actor=who.name) if len(prefix) >= 8 else 0
        if not count:
            raise NotFound(f"no token with prefix {prefix[:20]!r} (give the 10 characters a listing shows)")
        return {"revoked": count}

    @router.get("/admin/audit", tags=["admin"])
    def audit_log(who: Admin, store: Store, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                  offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> AuditPage:
        """The audit log of admin actions, newest first."""
        s: GatewayStore = store
        items, total = s.audit_log(limit=limit, offset=offset)
        return AuditPage(items=items, total=total, limit=limit, offset=offset)

    return router
