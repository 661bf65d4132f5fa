"""Interactive use: a :class:`concurrent.futures.Executor` whose calls are a Corral run."""

from .executor import Executor
from .live import RemoteError

__all__ = ["Executor", "RemoteError"]
