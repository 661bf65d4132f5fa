"""The gateway's most frequent reads, on a fast path: a job's status (``GET /api/v1/jobs/{id}``,
polled by every client) and a token's expiry (for the token cache of ``gateway/security.py``).

Each is one Core select on a connection, built once (per reader, for the job: the visibility rule
is :meth:`GatewayStore.visible_to`, the same as every other read) rather than for every request,
and no ORM session: bench/gateway.py measured the statement's construction and the session at
well over half the cost of a status read. The response is :func:`job_dict`'s, the API's one shape
of a job.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from .errors import NotFound
from .gateway_store import GatewayStore, Principal, job_dict
from .tables import Job, Project, Token, User

_JOB_COLUMNS = tuple(Job.__table__.columns.keys())
_EXPIRY = sa.select(Token.expires).where(Token.token_hash == sa.bindparam("token_hash"))


@lru_cache(maxsize=1024)
def _job_select(user_id: int) -> sa.Select[Any]:
    """A job by id (bound as ``job_id``) with its owner's and project's names, if ``user_id`` may read it."""
    return (sa.select(Job.__table__, User.name.label("owner_name"), Project.name.label("project_name"))
            .join(User, Job.owner_id == User.id).join(Project, Job.project_id == Project.id)
            .where(Job.id == sa.bindparam("job_id"), GatewayStore.visible_to(user_id)))


def read_job(store: GatewayStore, who: Principal, job_id: str) -> dict[str, Any]:
    """One job the caller may read, as :meth:`GatewayStore.get_job` gives it; another is not found."""
    with store.engine.connect() as conn:
        row = conn.execute(_job_select(who.user_id), {"job_id": job_id}).first()
    if row is None:
        raise NotFound(f"no job {job_id}")
    fields = row._mapping
    job = Job(**{name: fields[name] for name in _JOB_COLUMNS})
    return job_dict(job, row.owner_name, Project(id=row.project_id, name=row.project_name))


def token_expiry(store: GatewayStore, token_hash: str) -> datetime | None:
    """When the token hashed to ``token_hash`` expires (naive UTC); None if never (or unknown)."""
    with store.engine.connect() as conn:
        expires: datetime | None = conn.execute(_EXPIRY, {"token_hash": token_hash}).scalar()
    return expires
