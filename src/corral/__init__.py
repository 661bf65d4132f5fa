"""Corral: Python workflows for scientific computing.

Write tasks as functions, call them in a pipeline, run anywhere::

    from corral import task, pipeline, Resources

    @task(resources=Resources(cores=1, memory="2G"))
    def square(x: int) -> int:
        return x * x

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @pipeline
    def sums(n: int = 10):
        return total(square.map(x=range(n)))
"""

from typing import TYPE_CHECKING, Any

from corral.chunks import Chunk, chunks, concat
from corral.errors import CorralError, GraphError, ParameterError, TaskFailed, UsageError
from corral.graph import Future, MapFuture
from corral.model import Pipeline, TaskDef, each, fixed, pipeline, shell, task
from corral.resources import Resources
from corral.states import RunState, TaskState

if TYPE_CHECKING:
    from corral.api import Client, RunHandle, RunResult, attach, load_pipeline, plan, run, runs, start
    from corral.interactive import Executor

__version__ = "0.1.0"

_API = frozenset({"Client", "RunHandle", "RunResult", "attach", "load_pipeline", "plan", "run",
                  "runs", "start"})


def __getattr__(name: str) -> Any:
    """The running API (and its state store, SQLAlchemy) is imported on first use: a worker
    process that only runs tasks, or a pipeline file that only defines them, does not pay for
    it."""
    if name in _API:
        from corral import api

        return getattr(api, name)
    if name == "Executor":
        from corral.interactive import Executor

        return Executor
    raise AttributeError(f"module 'corral' has no attribute {name!r}")

__all__ = [
    "Chunk",
    "Client",
    "CorralError",
    "Executor",
    "Future",
    "GraphError",
    "MapFuture",
    "ParameterError",
    "Pipeline",
    "Resources",
    "RunHandle",
    "RunResult",
    "RunState",
    "TaskDef",
    "TaskFailed",
    "TaskState",
    "UsageError",
    "attach",
    "chunks",
    "concat",
    "each",
    "fixed",
    "load_pipeline",
    "pipeline",
    "plan",
    "run",
    "runs",
    "shell",
    "start",
    "task",
]
