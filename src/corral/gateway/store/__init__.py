"""The gateway's database: the only gateway package that imports SQLAlchemy (the "sql" import
contract of pyproject.toml)."""

from .errors import Conflict, Forbidden, GatewayError, NotFound, OverLimit, Unauthorized, Unprocessable
from .gateway_store import GatewayStore, JobRequest, Principal, SystemCheck, core_hours, default_url, hash_token
from .tables import SCOPES, TERMINAL_JOB_STATES, JobState

__all__ = [
    "SCOPES", "TERMINAL_JOB_STATES", "Conflict", "Forbidden", "GatewayError", "GatewayStore", "JobRequest",
    "JobState", "NotFound", "OverLimit", "Principal", "SystemCheck", "Unauthorized", "Unprocessable", "core_hours",
    "default_url", "hash_token",
]
