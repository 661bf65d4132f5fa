"""The admins' side of the gateway's store: the audit log, project updates, per-user quotas, and
users of OIDC tokens. Mixed into :class:`~.gateway_store.GatewayStore`; every change is written
to the append-only audit log in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .errors import Forbidden, GatewayError, NotFound
from .tables import ACTIVE_JOB_STATES, SCOPES, AuditEntry, Job, Project, ProjectMember, Token, User, UserQuota


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def write_audit(s: Session, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> None:
    """One audit entry, in the caller's transaction."""
    s.add(AuditEntry(at=_now(), actor=actor[:200], action=action[:50], target=target[:200],
                     detail=json.dumps(detail or {}, sort_keys=True, default=str)))


def quota_dict(q: UserQuota, user: str, project: str) -> dict[str, Any]:
    return {"project": project, "user": user, "budget_core_hours": q.budget_core_hours,
            "reserved_core_hours": q.reserved_core_hours, "charged_core_hours": q.charged_core_hours,
            "available_core_hours": q.budget_core_hours - q.charged_core_hours - q.reserved_core_hours}


class AdminMixin:
    """See the module docstring."""

    def session(self) -> AbstractContextManager[Session]:  # implemented by GatewayStore
        raise NotImplementedError

    def ensure_user(self, name: str, role: str | None = None) -> int:  # implemented by GatewayStore
        raise NotImplementedError

    def audit_log(self, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the audit log, newest first, and its length."""
        with self.session() as s:
            total = s.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) or 0
            q = sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
            return [{"at": e.at.isoformat() + "Z", "actor": e.actor, "action": e.action, "target": e.target,
                     "detail": json.loads(e.detail or "{}")} for e in s.scalars(q)], total

    def update_project(self, actor: str, name: str, *, budget_core_hours: float | None = None,
                       max_concurrent_jobs: int | None = None, system: str | None = None,
                       add_members: Sequence[str] = (), remove_members: Sequence[str] = ()) -> None:
        """Change a project's budget, concurrent-job limit, HPC system or members (audited). A
        budget below what is charged and reserved already is refused."""
        add_members, remove_members = list(dict.fromkeys(add_members)), list(dict.fromkeys(remove_members))
        ids = {m: self.ensure_user(m) for m in [*add_members, *remove_members]}
        with self.session() as s:
            project = s.scalar(sa.select(Project).where(Project.name == name).with_for_update())
            if project is None:
                raise NotFound(f"no project {name!r}")
            used = project.charged_core_hours + project.reserved_core_hours
            if budget_core_hours is not None and budget_core_hours < used:
                raise GatewayError(f"project {name!r} has used or reserved {used:g} core-hours; "
                                   f"a budget of {budget_core_hours:g} is below that")
            for field, value in (("budget_core_hours", budget_core_hours),
                                 ("max_concurrent_jobs", max_concurrent_jobs), ("system", system)):
                if value is not None:
                    setattr(project, field, value)
            for member in add_members:
                if s.get(ProjectMember, (project.id, ids[member])) is None:
                    s.add(ProjectMember(project_id=project.id, user_id=ids[member]))
            for member in remove_members:
                s.execute(sa.delete(ProjectMember).where(ProjectMember.project_id == project.id,
                                                         ProjectMember.user_id == ids[member]))
            write_audit(s, actor, "project.update", name, {
                "budget_core_hours": budget_core_hours, "max_concurrent_jobs": max_concurrent_jobs,
                "system": system, "add_members": list(add_members), "remove_members": list(remove_members)})

    def set_quota(self, actor: str, project: str, user: str, budget_core_hours: float) -> dict[str, Any]:
        """Give ``user`` a core-hour quota inside ``project`` (a member; audited). A new quota
        starts with what the user's jobs in the project have charged and reserved already."""
        if budget_core_hours < 0:
            raise GatewayError("a quota is a number of core-hours >= 0")
        with self.session() as s:
            pid = s.scalar(sa.select(Project.id).where(Project.name == project))
            uid = s.scalar(sa.select(User.id).where(User.name == user))
            if pid is None or uid is None or s.get(ProjectMember, (pid, uid)) is None:
                raise NotFound(f"{user!r} is not a member of a project {project!r}")
            quota = s.get(UserQuota, (pid, uid), with_for_update=True)
            if quota is None:
                mine = sa.select(Job).where(Job.project_id == pid, Job.owner_id == uid)
                reserved = sum(j.reserved_core_hours for j in s.scalars(
                    mine.where(Job.state.in_(list(ACTIVE_JOB_STATES)))))
                charged = sum(j.charged_core_hours or 0.0 for j in s.scalars(mine))
                quota = UserQuota(project_id=pid, user_id=uid, reserved_core_hours=reserved,
                                  charged_core_hours=charged, budget_core_hours=budget_core_hours)
                s.add(quota)
            quota.budget_core_hours = budget_core_hours
            s.flush()
            write_audit(s, actor, "quota.set", f"{project}/{user}", {"budget_core_hours": budget_core_hours})
            return quota_dict(quota, user, project)

    def quotas(self, project: str, user: str | None = None) -> list[dict[str, Any]]:
        """The quotas of a project (of one user if ``user``)."""
        with self.session() as s:
            q = (sa.select(UserQuota, User.name).join(User, User.id == UserQuota.user_id)
                 .join(Project, Project.id == UserQuota.project_id).where(Project.name == project)
                 .order_by(User.name))
            if user is not None:
                q = q.where(User.name == user)
            return [quota_dict(quota, name, project) for quota, name in s.execute(q)]

    def list_users(self) -> list[dict[str, Any]]:
        """Every user: name, role, creation time and how many usable tokens it has."""
        with self.session() as s:
            usable = (sa.select(sa.func.count()).select_from(Token)
                      .where(Token.user_id == User.id, Token.revoked.is_(False),
                             sa.or_(Token.expires.is_(None), Token.expires > _now()))
                      .scalar_subquery())
            q = sa.select(User, usable).order_by(User.name)
            return [{"name": u.name, "role": u.role, "created": u.created.isoformat() + "Z", "tokens": n}
                    for u, n in s.execute(q)]

    def list_tokens(self, user: str) -> list[dict[str, Any]]:
        """A user's tokens as listings show them: prefix, scopes, times, revoked (never the token)."""
        with self.session() as s:
            uid = s.scalar(sa.select(User.id).where(User.name == user))
            if uid is None:
                raise NotFound(f"no user {user!r}")
            q = sa.select(Token).where(Token.user_id == uid).order_by(Token.id)
            return [{"prefix": t.prefix, "scopes": t.scopes.split(), "created": t.created.isoformat() + "Z",
                     "expires": None if t.expires is None else t.expires.isoformat() + "Z",
                     "revoked": t.revoked} for t in s.scalars(q)]

    def oidc_user(self, subject: str, scopes: frozenset[str]) -> tuple[int, str, frozenset[str]]:
        """The user of an OIDC token's ``sub`` (created on first sight, role ``user``): its id, role
        and the scopes its token grants (``jobs:read jobs:write`` when it names none of ours)."""
        if not 0 < len(subject) <= 200:
            raise Forbidden("an OIDC subject of 1 to 200 characters is needed")
        uid = self.ensure_user(subject)
        with self.session() as s:
            role = s.get_one(User, uid).role
        granted = scopes & frozenset(SCOPES) or frozenset({"jobs:read", "jobs:write"})
        return uid, role, granted

