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

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.api import Client, RunHandle, RunResult, attach, load_pipeline, plan, run, runs, start
    from corral.chunks import Chunk, chunks, concat
    from corral.errors import CorralError, GraphError, ParameterError, TaskFailed, UsageError
    from corral.graph import Future, MapFuture
    from corral.interactive import Executor
    from corral.model import Pipeline, TaskDef, each, fixed, pipeline, shell, task
    from corral.resources import Resources
    from corral.states import RunState, TaskState

__version__ = "0.1.0"

_HOMES = {
    "corral.api": ("Client", "RunHandle", "RunResult", "attach", "load_pipeline", "plan", "run",
                   "runs", "start"),
    "corral.chunks": ("Chunk", "chunks", "concat"),
    "corral.errors": ("CorralError", "GraphError", "ParameterError", "TaskFailed", "UsageError"),
    "corral.graph": ("Future", "MapFuture"),
    "corral.interactive": ("Executor",),
    "corral.model": ("Pipeline", "TaskDef", "each", "fixed", "pipeline", "shell", "task"),
    "corral.resources": ("Resources",),
    "corral.states": ("RunState", "TaskState"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Each public name is imported from its module on first use (PEP 562): ``corral --version``
    and ``corral status`` do not pay for the model, and a worker process or a pipeline file that
    only defines tasks does not pay for the running API and its state store (SQLAlchemy)."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


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
