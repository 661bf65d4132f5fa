"""Read-only loading of one run's rows, shared by metrics, the HTML report and the exports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.store.rows import plain
from corral.store.store import Store


@dataclass
class RunData:
    """Rows of one run: the run, its tasks (by ``idx``), their attempts and the graph edges."""

    run: dict[str, Any]
    tasks: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    edges: list[tuple[int, int]]
    by_task: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a in self.attempts:
            grouped[int(a["task_id"])].append(a)
        for rows in grouped.values():
            rows.sort(key=lambda a: int(a["number"]))
        self.by_task = dict(grouped)

    @property
    def run_id(self) -> str:
        return str(self.run["id"])

    def task_attempts(self, task: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self.by_task.get(int(task["id"]), [])


def load_run(store: Store, run_id: str) -> RunData:
    """All rows of a run given its id, a unique prefix, or ``latest``."""
    run = store.get_run(run_id)
    rid = str(run["id"])
    return RunData(plain(run), [plain(t) for t in store.tasks(rid)],
                   [plain(a) for a in store.attempts(rid)], store.edges(rid))


def attempt_row(store: Store, attempt_id: str) -> dict[str, Any] | None:
    return store.attempt(attempt_id)


def resources_of(attempt: Mapping[str, Any] | None, task: Mapping[str, Any]) -> dict[str, Any]:
    """The resources an attempt asked for (the task's when the attempt did not record them)."""
    if attempt is not None and attempt.get("resources"):
        return dict(attempt["resources"])
    return dict(task.get("resources") or {})


def cores_of(resources: Mapping[str, Any]) -> int:
    cores = resources.get("cores") or 1
    nodes = resources.get("nodes") or 1
    try:
        return max(1, int(cores) * int(nodes))
    except (TypeError, ValueError):
        return 1


def int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def wall_of(attempt: Mapping[str, Any]) -> float | None:
    """Wall time in seconds: the measured ``wall``, else ``ended_at - started_at``."""
    if attempt.get("wall") is not None:
        return float(attempt["wall"])
    if attempt.get("started_at") is not None and attempt.get("ended_at") is not None:
        return max(0.0, float(attempt["ended_at"]) - float(attempt["started_at"]))
    return None


def cpu_of(attempt: Mapping[str, Any]) -> float | None:
    user, system = attempt.get("cpu_user"), attempt.get("cpu_system")
    if user is None and system is None:
        return None
    return float(user or 0.0) + float(system or 0.0)
