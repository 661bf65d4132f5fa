"""A run's progress as the engine counts it, for the progress displays and reporters."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from corral.states import TaskState


@dataclass
class Progress:
    total: int = 0
    done: int = 0
    cached: int = 0
    running: int = 0
    failed: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.time)
    paused: bool = False
    groups: dict[str, dict[TaskState, int]] = field(default_factory=dict)
    """Per task name (a map's elements share theirs): how many tasks are in each state."""

    def count(self, group: str, old: TaskState | None, new: TaskState) -> None:
        counts = self.groups.setdefault(group, {})
        if old is not None:
            counts[old] -= 1
        counts[new] = counts.get(new, 0) + 1
