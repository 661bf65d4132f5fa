"""The gateway's database: users, hashed tokens, projects, jobs and the core-hour ledger.

Accounting: core-hours = nodes x cores per node x hours. Submitting reserves the requested
walltime's core-hours and one concurrent-job slot in one conditional UPDATE of the project's row
(atomic on SQLite and PostgreSQL alike: it succeeds only if budget and limit allow); ending a job
charges its actual runtime and releases the rest. Every change goes to the append-only ledger.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from corral.store.wal import use_wal

from .admin import AdminMixin, write_audit
from .errors import Conflict, Forbidden, NotFound, OverLimit, Unauthorized
from .ingest import IngestMixin
from .migrate import ensure_schema
from .tables import (
    ACTIVE_JOB_STATES,
    FAILED_JOB_STATES,
    FOLLOWED_JOB_STATES,
    ROLES,
    SCOPES,
    TERMINAL_JOB_STATES,
    Job,
    JobEvent,
    JobState,
    JobTag,
    LedgerEntry,
    Project,
    ProjectMember,
    Token,
    User,
    UserQuota,
)

TOKEN_PREFIX = "crl_"


def now() -> datetime:
    """Naive UTC (SQLite keeps no time zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def core_hours(nodes: int, cores_per_node: int, hours: float) -> float:
    return nodes * cores_per_node * hours


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's user, role and scopes."""

    user_id: int
    name: str
    role: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class JobRequest:
    command: str
    title: str = ""
    project: str | None = None
    nodes: int = 1
    cores_per_node: int = 1
    walltime_hours: float = 1.0
    tags: tuple[tuple[str, str], ...] = ()
    """Key-value tags (TES ``tags``), stored in ``job_tags``."""
    queue: str | None = None
    """The queue (partition) to run in; None: the HPC system's default."""
    pipeline_file: str | None = None
    """A pipeline job (``command`` is then empty): the file, relative to the pipelines directory."""
    pipeline_name: str | None = None
    pipeline_params: str | None = None
    """The pipeline's parameters as JSON."""
    memory_gb: float | None = None
    """Memory per node in GB; None: the system's default."""
    backend: tuple[tuple[str, str], ...] = ()
    """Scheduler parameters (``account``, ``qos`` ...): the HPC system's check keeps those of its
    kind's allowlist and refuses (or, not ``backend_strict``, drops) the others."""
    backend_strict: bool = True


SystemCheck = Callable[[str, JobRequest], JobRequest]
"""Checks a request against the limits of the HPC system named (raising a GatewayError naming the
limit) and returns it as the job runs: its queue chosen, its backend parameters vetted."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat() + "Z"


def job_dict(job: Job, owner: str, project: Project) -> dict[str, Any]:
    """A job as the API shows it, with the admin listing's fields of the seed's service account."""
    runtime = None
    if job.started is not None:
        runtime = ((job.ended or now()) - job.started).total_seconds()
    return {
        "id": job.id, "job_id": job.native_id, "native_id": job.native_id, "owner": owner,
        "project": project.id, "project_name": project.name, "project_hpc": job.system,
        "system": job.system, "title": job.title, "command": job.command, "nodes": job.nodes,
        "cores_per_node": job.cores_per_node, "walltime_hours": job.walltime_hours, "queue": job.queue,
        "memory_gb": job.memory_gb, "backend_parameters": json.loads(job.backend_parameters or "{}"),
        "pipeline": None if job.pipeline_file is None else {
            "file": job.pipeline_file, "name": job.pipeline_name,
            "params": json.loads(job.pipeline_params or "{}")},
        "state": job.state, "stage": job.state, "terminal_stage": job.state in TERMINAL_JOB_STATES,
        "failed": job.state in FAILED_JOB_STATES, "submitted": _iso(job.submitted),
        "init_date": _iso(job.submitted), "started": _iso(job.started), "end_date": _iso(job.ended),
        "ended": _iso(job.ended), "runtime": runtime, "exit_code": job.exit_code,
        "core_hours_reserved": job.reserved_core_hours, "core_hours_charged": job.charged_core_hours,
    }


def project_dict(project: Project, members: list[str]) -> dict[str, Any]:
    left = project.budget_core_hours - project.charged_core_hours - project.reserved_core_hours
    return {
        "id": project.id, "name": project.name, "system": project.system,
        "budget_core_hours": project.budget_core_hours, "charged_core_hours": project.charged_core_hours,
        "reserved_core_hours": project.reserved_core_hours, "available_core_hours": left,
        "max_concurrent_jobs": project.max_concurrent_jobs, "active_jobs": project.active_jobs,
        "members": members,
    }


def default_url(workdir: Any) -> str:
    from pathlib import Path

    path = Path(workdir).resolve() / ".corral" / "gateway.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL: readers (status requests) never wait for a writer (a submission), and a commit costs
    no fsync of the whole database (synchronous=NORMAL is durable across a crash of the gateway;
    the last commits may be lost only to a power failure)."""
    cursor = dbapi_connection.cursor()
    use_wal(cursor, 30.0)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class GatewayStore(AdminMixin, IngestMixin):
    """Every read and write of the gateway's database, one short transaction each."""

    def __init__(self, url: str) -> None:
        args: dict[str, Any] = {}
        if sa.make_url(url).get_backend_name() == "sqlite":
            args = {"timeout": 30, "check_same_thread": False}
        self.engine = sa.create_engine(url, connect_args=args)
        if args:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        ensure_schema(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.on_access_change: list[Callable[[], None]] = []
        """Called after a token's revocation or a user's change of role commits (the gateway's
        token cache forgets its tokens)."""

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # users and tokens -------------------------------------------------------------------------

    def ensure_user(self, name: str, role: str | None = None) -> int:
        """The user's id, creating the user (role ``user`` unless given); ``role`` updates it."""
        if role is not None and role not in ROLES:
            raise Forbidden(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        changed = False
        with self.session() as s:
            user = s.scalar(sa.select(User).where(User.name == name))
            if user is None:
                user = User(name=name, role=role or "user", created=now())
                s.add(user)
                s.flush()
            elif role is not None and user.role != role:
                user.role, changed = role, True
            user_id = user.id
        if changed:  # a demoted admin's cached tokens must not keep the admin role
            for forget in self.on_access_change:
                forget()
        return user_id

    def create_token(self, user: str, scopes: list[str] | None = None, *, admin: bool = False,
                     expires_days: float | None = None, actor: str = "cli") -> str:
        """A new token for ``user`` (created if needed; ``admin`` makes the user an admin). Returns the
        token in clear: the only time it exists outside its holder; the database keeps its SHA-256."""
        chosen = list(scopes) if scopes else (list(SCOPES) if admin else ["jobs:read", "jobs:write"])
        unknown = [s for s in chosen if s not in SCOPES]
        if unknown:
            raise Forbidden(f"unknown scope(s) {', '.join(unknown)}; scopes are {', '.join(SCOPES)}")
        user_id = self.ensure_user(user, "admin" if admin else None)
        with self.session() as s:
            role = s.get_one(User, user_id).role
            if "admin" in chosen and role != "admin":
                raise Forbidden(f"user {user!r} is not an admin: the admin scope needs --admin")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            expires = now() + timedelta(days=expires_days) if expires_days else None
            s.add(Token(user_id=user_id, token_hash=hash_token(token), prefix=token[:10],
                        scopes=" ".join(chosen), created=now(), expires=expires))
            write_audit(s, actor, "token.create", user, {"prefix": token[:10], "scopes": chosen,
                                                          "admin": admin, "expires": expires})
        return token

    def revoke_token(self, token_or_prefix: str, actor: str = "cli") -> int:
        """Revoke a token given in clear, or every token whose listed prefix matches. Returns how many."""
        with self.session() as s:
            by_hash = sa.select(Token).where(Token.token_hash == hash_token(token_or_prefix))
            found = list(s.scalars(by_hash))
            if not found and len(token_or_prefix) >= 8:
                found = list(s.scalars(sa.select(Token).where(Token.prefix == token_or_prefix[:10])))
            for token in found:
                token.revoked = True
                write_audit(s, actor, "token.revoke", token.prefix)
        for forget in self.on_access_change:
            forget()
        return len(found)

    def authenticate(self, token: str) -> Principal:
        with self.session() as s:
            row = s.execute(sa.select(Token, User).join(User, Token.user_id == User.id)
                            .where(Token.token_hash == hash_token(token))).first()
            if row is None:
                raise Unauthorized("unknown token")
            tok, user = row
            if tok.revoked:
                raise Unauthorized("token revoked")
            if tok.expires is not None and tok.expires <= now():
                raise Unauthorized("token expired")
            return Principal(user.id, user.name, user.role, frozenset(tok.scopes.split()))

    # projects ---------------------------------------------------------------------------------

    def create_project(self, name: str, budget_core_hours: float, *, system: str = "local",
                       max_concurrent_jobs: int = 10, members: Sequence[str] = (), actor: str = "cli") -> int:
        member_ids = [self.ensure_user(m) for m in dict.fromkeys(members)]
        with self.session() as s:
            if s.scalar(sa.select(Project.id).where(Project.name == name)) is not None:
                raise Conflict(f"project {name!r} exists")
            project = Project(name=name, system=system, budget_core_hours=budget_core_hours,
                              max_concurrent_jobs=max_concurrent_jobs, reserved_core_hours=0.0,
                              charged_core_hours=0.0, active_jobs=0)
            s.add(project)
            s.flush()
            for uid in member_ids:
                s.add(ProjectMember(project_id=project.id, user_id=uid))
            write_audit(s, actor, "project.create", name, {
                "budget_core_hours": budget_core_hours, "system": system,
                "max_concurrent_jobs": max_concurrent_jobs, "members": list(members)})
            return project.id

    def add_member(self, project: str, user: str, actor: str = "cli") -> None:
        uid = self.ensure_user(user)
        with self.session() as s:
            pid = s.scalar(sa.select(Project.id).where(Project.name == project))
            if pid is None:
                raise NotFound(f"no project {project!r}")
            if s.get(ProjectMember, (pid, uid)) is None:
                s.add(ProjectMember(project_id=pid, user_id=uid))
                write_audit(s, actor, "project.add_member", project, {"user": user})

    def _members(self, s: Session, project_id: int) -> list[str]:
        q = (sa.select(User.name).join(ProjectMember, ProjectMember.user_id == User.id)
             .where(ProjectMember.project_id == project_id).order_by(User.name))
        return list(s.scalars(q))

    def list_projects(self, who: Principal) -> list[dict[str, Any]]:
        """The caller's projects (every project for an admin)."""
        with self.session() as s:
            q = sa.select(Project).order_by(Project.name)
            if who.role != "admin":
                q = q.join(ProjectMember, ProjectMember.project_id == Project.id).where(
                    ProjectMember.user_id == who.user_id)
            return [project_dict(p, self._members(s, p.id)) for p in s.scalars(q)]

    def get_project(self, who: Principal, name: str) -> dict[str, Any]:
        """One project of the caller's (any for an admin); another project is not found."""
        found = [p for p in self.list_projects(who) if p["name"] == name]
        if not found:
            raise NotFound(f"no project {name!r} of yours")
        return found[0]

    def _project_for(self, s: Session, who: Principal, name: str | None) -> Project:
        q = (sa.select(Project).join(ProjectMember, ProjectMember.project_id == Project.id)
             .where(ProjectMember.user_id == who.user_id).order_by(Project.name))
        if name is not None:
            project = s.scalar(q.where(Project.name == name))
            if project is None:
                raise NotFound(f"no project {name!r} of yours")
            return project
        projects = list(s.scalars(q))
        if not projects:
            raise Forbidden(f"user {who.name!r} is a member of no project: an admin adds you to one")
        if len(projects) > 1:
            raise Forbidden("you are a member of several projects: name one with \"project\"")
        return projects[0]

    # jobs -------------------------------------------------------------------------------------

    def submit(self, who: Principal, req: JobRequest, check: SystemCheck | None = None) -> dict[str, Any]:
        """Queue a job, reserving its core-hours and a concurrent slot in the same transaction.
        ``check`` vets the request against its project's HPC system first (nothing is reserved
        if it refuses) and picks the queue."""
        need = core_hours(req.nodes, req.cores_per_node, req.walltime_hours)
        with self.session() as s:
            project = self._project_for(s, who, req.project)
            req = check(project.system, req) if check is not None else req
            self._reserve_quota(s, project, who, need)
            reserved = s.execute(
                sa.update(Project).where(
                    Project.id == project.id,
                    Project.budget_core_hours - Project.charged_core_hours - Project.reserved_core_hours >= need,
                    Project.active_jobs < Project.max_concurrent_jobs,
                ).values(reserved_core_hours=Project.reserved_core_hours + need,
                         active_jobs=Project.active_jobs + 1)
                .execution_options(synchronize_session=False))
            if reserved.rowcount != 1:  # type: ignore[attr-defined]
                s.refresh(project)
                raise OverLimit(self._refusal(project, need))
            job = Job(id=str(uuid.uuid4()), owner_id=who.user_id, project_id=project.id,
                      system=project.system, title=req.title, command=req.command, nodes=req.nodes,
                      cores_per_node=req.cores_per_node, walltime_hours=req.walltime_hours, queue=req.queue,
                      memory_gb=req.memory_gb,
                      backend_parameters=json.dumps(dict(req.backend), sort_keys=True) if req.backend else None,
                      pipeline_file=req.pipeline_file, pipeline_name=req.pipeline_name,
                      pipeline_params=req.pipeline_params,
                      state=JobState.QUEUED, submitted=now(), reserved_core_hours=need)
            s.add(job)
            s.flush()
            self._event(s, job.id, JobState.QUEUED)
            for key, value in req.tags:
                s.add(JobTag(job_id=job.id, key=key, value=value))
            self._ledger(s, job, "reserve", need, f"{req.nodes} x {req.cores_per_node} x {req.walltime_hours} h")
            s.refresh(project)
            return job_dict(job, who.name, project)

    @staticmethod
    def _reserve_quota(s: Session, project: Project, who: Principal, need: float) -> None:
        """Reserve ``need`` on the user's quota in the project, if there is one (a conditional
        UPDATE in the submission's transaction: a refusal rolls the whole submission back)."""
        left = UserQuota.budget_core_hours - UserQuota.charged_core_hours - UserQuota.reserved_core_hours
        done = s.execute(sa.update(UserQuota).where(
            UserQuota.project_id == project.id, UserQuota.user_id == who.user_id, left >= need,
        ).values(reserved_core_hours=UserQuota.reserved_core_hours + need)
            .execution_options(synchronize_session=False))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            return
        quota = s.get(UserQuota, (project.id, who.user_id))
        if quota is not None:
            s.refresh(quota)
            have = quota.budget_core_hours - quota.charged_core_hours - quota.reserved_core_hours
            raise OverLimit(f"your quota in project {project.name!r} has {have:g} of its {quota.budget_core_hours:g} "
                            f"core-hours left ({quota.reserved_core_hours:g} reserved by your active jobs); "
                            f"this job needs {need:g}")

    @staticmethod
    def _refusal(project: Project, need: float) -> str:
        if project.active_jobs >= project.max_concurrent_jobs:
            return (f"project {project.name!r} is at its concurrent-job limit of {project.max_concurrent_jobs} "
                    f"({project.active_jobs} active): wait for one to end")
        left = project.budget_core_hours - project.charged_core_hours - project.reserved_core_hours
        return (f"project {project.name!r} has {left:g} of its {project.budget_core_hours:g} core-hour budget "
                f"left ({project.reserved_core_hours:g} reserved by active jobs); this job needs {need:g}")

    @staticmethod
    def _event(s: Session, job_id: str, state: JobState, note: str = "") -> None:
        s.add(JobEvent(job_id=job_id, at=now(), state=state, note=note[:500]))

    def history(self, who: Principal | None, job_id: str) -> list[dict[str, Any]]:
        """The states a job went through, oldest first (another user's job is not found)."""
        self.get_job(who, job_id)
        with self.session() as s:
            q = sa.select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)
            return [{"at": _iso(e.at), "state": e.state, "note": e.note} for e in s.scalars(q)]

    @staticmethod
    def _ledger(s: Session, job: Job, kind: str, amount: float, note: str = "") -> None:
        s.add(LedgerEntry(at=now(), project_id=job.project_id, job_id=job.id, user_id=job.owner_id,
                          kind=kind, core_hours=amount, note=note))

    def _job_rows(self, s: Session, q: sa.Select[Job, str, Project]) -> list[dict[str, Any]]:
        return [job_dict(job, owner, project) for job, owner, project in s.execute(q)]

    @staticmethod
    def _job_query() -> sa.Select[Job, str, Project]:
        return (sa.select(Job, User.name, Project).join(User, Job.owner_id == User.id)
                .join(Project, Job.project_id == Project.id))

    def list_jobs(self, owner_id: int | None, *, limit: int, offset: int, state: str | None = None,
                  owner: str | None = None, project: str | None = None, system: str | None = None,
                  since: datetime | None = None, until: datetime | None = None, viewer: int | None = None,
                  ) -> tuple[list[dict[str, Any]], int]:
        """A page of jobs, newest first, and how many there are: one user's (``owner_id``), or
        everyone's (``None``, the admin listing; ``owner`` filters it by user name); ``viewer``
        keeps those the user ``viewer`` may read (their own and their projects'); filtered by
        state, project name, HPC system and submission time (``since`` <= submitted < ``until``)."""
        q = self._job_query()
        count = (sa.select(sa.func.count()).select_from(Job).join(User, Job.owner_id == User.id)
                 .join(Project, Job.project_id == Project.id))
        conds: list[sa.ColumnElement[bool]] = []
        for column, value in ((Project.name, project), (Job.system, system)):
            if value is not None:
                conds.append(column == value)
        if since is not None:
            conds.append(Job.submitted >= since.replace(tzinfo=None))
        if until is not None:
            conds.append(Job.submitted < until.replace(tzinfo=None))
        if owner_id is not None:
            conds.append(Job.owner_id == owner_id)
        if viewer is not None:
            conds.append(self.visible_to(viewer))
        if owner is not None:
            conds.append(User.name == owner)
        if state is not None:
            conds.append(Job.state == state)
        with self.session() as s:
            total = s.scalar(count.where(*conds)) or 0
            rows = self._job_rows(s, q.where(*conds).order_by(Job.submitted.desc(), Job.id)
                                  .limit(limit).offset(offset))
            return rows, total

    def list_own_jobs(self, owner_id: int, *, limit: int, offset: int, name_prefix: str | None = None,
                      tags: Sequence[tuple[str, str | None]] = ()) -> list[dict[str, Any]]:
        """A page of one user's jobs, newest first, each with its ``tags``: those whose title starts
        with ``name_prefix`` and that have every tag key of ``tags`` (with that value, unless None)."""
        conds: list[sa.ColumnElement[bool]] = [Job.owner_id == owner_id]
        if name_prefix:
            conds.append(Job.title.startswith(name_prefix, autoescape=True))
        for key, value in tags:
            has = sa.select(JobTag.job_id).where(JobTag.job_id == Job.id, JobTag.key == key)
            if value is not None:
                has = has.where(JobTag.value == value)
            conds.append(has.exists())
        with self.session() as s:
            rows = self._job_rows(s, self._job_query().where(*conds)
                                  .order_by(Job.submitted.desc(), Job.id.desc()).limit(limit).offset(offset))
            self._add_tags(s, rows)
            return rows

    @staticmethod
    def _add_tags(s: Session, rows: list[dict[str, Any]]) -> None:
        tags: dict[str, dict[str, str]] = {row["id"]: {} for row in rows}
        if tags:
            for tag in s.scalars(sa.select(JobTag).where(JobTag.job_id.in_(list(tags)))):
                tags[tag.job_id][tag.key] = tag.value
        for row in rows:
            row["tags"] = tags[row["id"]]

    def get_job_with_tags(self, who: Principal, job_id: str) -> dict[str, Any]:
        """One of the caller's jobs with its ``tags``; another user's job is not found."""
        with self.session() as s:
            rows = self._job_rows(s, self._job_query().where(Job.id == job_id, Job.owner_id == who.user_id))
            if not rows:
                raise NotFound(f"no task {job_id}")
            self._add_tags(s, rows)
            return rows[0]

    @staticmethod
    def visible_to(user_id: int) -> sa.ColumnElement[bool]:
        """The jobs user ``user_id`` may read: their own, and those of the projects they are a
        member of (read-only: cancelling stays the owner's)."""
        member = sa.select(ProjectMember.project_id).where(
            ProjectMember.project_id == Job.project_id, ProjectMember.user_id == user_id).exists()
        return sa.or_(Job.owner_id == user_id, member)

    def get_job(self, who: Principal | None, job_id: str) -> dict[str, Any]:
        """One job the caller may read (their own, or one of a project they are a member of);
        another is not found (``who`` None: any job, for the runner and admins)."""
        with self.session() as s:
            q = self._job_query().where(Job.id == job_id)
            if who is not None:
                q = q.where(self.visible_to(who.user_id))
            rows = self._job_rows(s, q)
            if not rows:
                raise NotFound(f"no job {job_id}")
            return rows[0]

    def cancel(self, who: Principal, job_id: str) -> dict[str, Any]:
        """A queued job is cancelled at once (its reservation released); an initializing or
        running one goes to ``cancelling`` and the runner stops it and charges what it ran."""
        with self.session() as s:
            job = s.scalar(sa.select(Job).where(Job.id == job_id, Job.owner_id == who.user_id)
                           .with_for_update())
            if job is None:
                raise NotFound(f"no job {job_id}")
            queued = (JobState.QUEUED,)
            if not (job.state == JobState.QUEUED and self._end(s, job, JobState.CANCELLED, None, 0.0, queued)):
                live = (JobState.INITIALIZING, JobState.RUNNING)
                moved = s.execute(sa.update(Job).where(Job.id == job_id, Job.state.in_(live))
                                  .values(state=JobState.CANCELLING).execution_options(synchronize_session=False))
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    state = s.scalar(sa.select(Job.state).where(Job.id == job_id))
                    raise Conflict(f"job {job_id} is {state}: nothing to cancel")
                self._event(s, job_id, JobState.CANCELLING, f"asked by {who.name}")
        return self.get_job(who, job_id)

    # the runner's side ------------------------------------------------------------------------

    def claim(self, systems: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` of the oldest queued jobs on ``systems``, now ``initializing`` (each by
        a conditional UPDATE: a job cancelled meanwhile is not claimed)."""
        with self.session() as s:
            ids = list(s.scalars(sa.select(Job.id).where(Job.state == JobState.QUEUED, Job.system.in_(systems))
                                 .order_by(Job.submitted, Job.id).limit(limit)))
            claimed = []
            for job_id in ids:
                done = s.execute(sa.update(Job).where(Job.id == job_id, Job.state == JobState.QUEUED)
                                 .values(state=JobState.INITIALIZING)
                                 .execution_options(synchronize_session=False))
                if done.rowcount == 1:  # type: ignore[attr-defined]
                    self._event(s, job_id, JobState.INITIALIZING)
                    claimed.append(job_id)
        return [self.get_job(None, job_id) for job_id in claimed]

    def mark_running(self, job_id: str, started: datetime) -> None:
        """The job started on its system (an initializing one becomes running)."""
        with self.session() as s:
            s.execute(sa.update(Job).where(Job.id == job_id, Job.started.is_(None))
                      .values(started=started).execution_options(synchronize_session=False))
            moved = s.execute(sa.update(Job).where(Job.id == job_id, Job.state == JobState.INITIALIZING)
                              .values(state=JobState.RUNNING).execution_options(synchronize_session=False))
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                self._event(s, job_id, JobState.RUNNING)

    def requeue(self, job_id: str, note: str) -> None:
        """Queue again an initializing job whose submission is unknown (the gateway stopped while
        submitting it), or a pipeline job whose engine ended with the previous gateway (starting
        it again resumes its run): its reservation stays, nothing is charged twice."""
        live = (JobState.INITIALIZING, JobState.RUNNING)
        with self.session() as s:
            moved = s.execute(sa.update(Job).where(
                Job.id == job_id, Job.state.in_(live),
                sa.or_(Job.native_id.is_(None), Job.pipeline_file.is_not(None)),
            ).values(state=JobState.QUEUED, native_id=None).execution_options(synchronize_session=False))
            if moved.rowcount == 1:  # type: ignore[attr-defined]
                self._event(s, job_id, JobState.QUEUED, note)

    def followed(self) -> list[dict[str, Any]]:
        """Jobs handed (or being handed) to an executor and not ended: id, system, state, native
        id and submit time. After a restart, the runner re-attaches to them."""
        with self.session() as s:
            q = (sa.select(Job.id, Job.system, Job.state, Job.native_id, Job.submitted, Job.pipeline_file)
                 .where(Job.state.in_(list(FOLLOWED_JOB_STATES))).order_by(Job.submitted, Job.id))
            return [{"id": r.id, "system": r.system, "state": r.state, "native_id": r.native_id,
                     "submitted": r.submitted, "pipeline": r.pipeline_file is not None} for r in s.execute(q)]

    def set_native_id(self, job_id: str, native_id: str) -> None:
        with self.session() as s:
            s.execute(sa.update(Job).where(Job.id == job_id).values(native_id=native_id))

    def job_state(self, job_id: str) -> str:
        with self.session() as s:
            state = s.scalar(sa.select(Job.state).where(Job.id == job_id))
            if state is None:
                raise NotFound(f"no job {job_id}")
            return state

    def finish(self, job_id: str, state: JobState, exit_code: int | None, *, started: datetime | None = None,
               ended: datetime | None = None, note: str = "", used_core_hours: float | None = None) -> bool:
        """End a followed job: charge its actual runtime (``started`` to ``ended`` when its system
        measured them, else the recorded start to now; or ``used_core_hours`` when given, a
        pipeline's tasks' own use), at most its reservation, and release the rest. False if it
        had ended already: a job is charged once."""
        with self.session() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None or job.state in TERMINAL_JOB_STATES:
                return False
            begun = started or job.started
            hours = 0.0 if begun is None else max(0.0, ((ended or now()) - begun).total_seconds() / 3600.0)
            used = core_hours(job.nodes, job.cores_per_node, hours) if used_core_hours is None else used_core_hours
            charge = min(job.reserved_core_hours, max(0.0, used))
            return self._end(s, job, state, exit_code, charge, tuple(FOLLOWED_JOB_STATES), note,
                             started=begun, ended=ended)

    def _end(self, s: Session, job: Job, state: JobState, exit_code: int | None, charge: float,
             from_states: tuple[JobState, ...], note: str = "", *, started: datetime | None = None,
             ended: datetime | None = None) -> bool:
        """End ``job`` if it is still in one of ``from_states`` (a conditional UPDATE: of a cancel
        and the runner's claim of the same queued job, one wins); charge ``charge`` core-hours and
        release the rest of its reservation. False if the job had moved on meanwhile."""
        done = s.execute(sa.update(Job).where(Job.id == job.id, Job.state.in_(from_states)).values(
            state=state, exit_code=exit_code, ended=ended or now(), charged_core_hours=charge,
            started=started or job.started,
        ).execution_options(synchronize_session=False))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self._event(s, job.id, state, note)
        release = job.reserved_core_hours - charge
        s.execute(sa.update(Project).where(Project.id == job.project_id).values(
            reserved_core_hours=Project.reserved_core_hours - job.reserved_core_hours,
            charged_core_hours=Project.charged_core_hours + charge,
            active_jobs=Project.active_jobs - 1).execution_options(synchronize_session=False))
        s.execute(sa.update(UserQuota).where(UserQuota.project_id == job.project_id, UserQuota.user_id == job.owner_id)
                  .values(reserved_core_hours=UserQuota.reserved_core_hours - job.reserved_core_hours,
                          charged_core_hours=UserQuota.charged_core_hours + charge)
                  .execution_options(synchronize_session=False))
        if charge:
            self._ledger(s, job, "charge", charge, f"{state}")
        if release:
            self._ledger(s, job, "release", release, f"{state}")
        return True

    def ledger(self, project: str | None = None) -> list[dict[str, Any]]:
        with self.session() as s:
            q = sa.select(LedgerEntry, Project.name).join(Project, LedgerEntry.project_id == Project.id)
            if project is not None:
                q = q.where(Project.name == project)
            return [{"at": _iso(e.at), "project": name, "job": e.job_id, "kind": e.kind,
                     "core_hours": e.core_hours, "note": e.note}
                    for e, name in s.execute(q.order_by(LedgerEntry.id))]

    def token_hashes(self) -> list[str]:
        """Every stored token column value (for tests: the clear token is never among them)."""
        with self.session() as s:
            return [f"{t.token_hash} {t.prefix} {t.scopes}" for t in s.scalars(sa.select(Token))]


__all__ = ["ACTIVE_JOB_STATES", "GatewayStore", "JobRequest", "JobState", "Principal"]
