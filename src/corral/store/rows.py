"""The rows the store returns, typed: a run, a task, an attempt (the columns of ``schema``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class RunRow(TypedDict):
    """One run: what ran (pipeline, source, params), where, on what, and how it stands."""

    id: str
    identity: str
    pipeline: str
    source: str
    params: dict[str, Any]
    workdir: str
    executor: dict[str, Any]
    """``kind``, ``options`` and ``jobs`` (0: no limit from the engine)."""
    state: str
    """A :class:`corral.states.RunState` value."""
    control: str
    """``none``, ``pause`` or ``cancel``: what was asked of its engine."""
    owner: str
    project: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    engine_host: str | None
    engine_pid: int | None
    heartbeat_at: float | None
    error: str | None
    environment: dict[str, Any] | None
    options: dict[str, Any] | None
    n_tasks: int


class TaskRow(TypedDict):
    """One task of a run: its name, key and state (a :class:`corral.states.TaskState` value)."""

    id: int
    run_id: str
    idx: int
    name: str
    grp: str
    kind: str
    key: str
    state: str
    cached: bool
    attempts: int
    code_hash: str | None
    params: dict[str, Any] | None
    inputs: dict[str, str] | None
    upstream: dict[str, str] | None
    resources: dict[str, Any] | None
    error: str | None
    started_at: float | None
    finished_at: float | None


class AttemptRow(TypedDict):
    """One attempt of a task: where and how it ran, its measurements and its outcome."""

    id: str
    task_id: int
    run_id: str
    number: int
    state: str
    executor: str
    native_id: str | None
    host: str | None
    workdir: str | None
    resources: dict[str, Any] | None
    submitted_at: float | None
    started_at: float | None
    ended_at: float | None
    wall: float | None
    cpu_user: float | None
    cpu_system: float | None
    peak_rss: int | None
    read_bytes: int | None
    write_bytes: int | None
    exit_code: int | None
    error: str | None
    extra: dict[str, Any] | None


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A mutable copy of a row, for code that adds or changes fields."""
    return dict(row)
