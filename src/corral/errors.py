"""The one exception hierarchy of Corral.

::

    CorralError                      base of everything Corral raises on purpose
    ├── UsageError                   bad input from the user; the message names the fix
    │   ├── GraphError               the pipeline graph is invalid (cycle, duplicate output, ...)
    │   ├── ParameterError           a pipeline parameter is unknown or of the wrong type
    │   ├── ResourceError            a Resources value is malformed or unsupported by a scheduler
    │   ├── HashingError             an argument cannot be hashed stably for the cache key
    │   ├── SerializationError       an argument or result cannot be pickled
    │   ├── ConfigError              corral.toml or an executor profile is wrong
    │   └── MissingExtra             an optional dependency is not installed; names the extra
    ├── StoreError                   the state store cannot be opened or migrated
    │   └── RunNotFound              no run or task of that id
    ├── RunLockedError               another live engine owns the run
    ├── StateError                   a state change outside the transition table (a bug)
    ├── ExecutorError                an executor could not submit, poll or cancel
    │   └── CommandError             a scheduler command failed (argv, exit code, stderr)  [transient]
    └── TaskFailed                   a task failed after all its retries (raised by Run.result())

Every message is one line written for the user: what is wrong, and what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence


class CorralError(Exception):
    """Base class of every error Corral raises on purpose."""

    transient: bool = False


class UsageError(CorralError):
    """Bad input from the user; the message says how to fix it."""


class GraphError(UsageError):
    """The pipeline graph is invalid."""


class ParameterError(UsageError):
    """A pipeline parameter is unknown or has the wrong type."""


class ResourceError(UsageError):
    """A Resources value is malformed, or a scheduler cannot honour it."""


class HashingError(UsageError):
    """A value cannot be hashed stably for a cache key."""


class SerializationError(UsageError):
    """A value cannot be pickled to be sent to a worker or stored."""


class ConfigError(UsageError):
    """The configuration file or an executor profile is invalid."""


class MissingExtra(UsageError):
    """An optional dependency is not installed: the message names the extra that brings it
    (``extra=None``: a dependency every install has, missing from a broken environment)."""

    def __init__(self, feature: str, extra: str | None, exc: ImportError) -> None:
        module = (exc.name or str(exc)).partition(".")[0]
        fix = (f"install it with: pip install 'corral[{extra}]'" if extra
               else "reinstall Corral with its dependencies: pip install --force-reinstall corral")
        super().__init__(f"{feature} needs the Python package {module!r}, which is not installed; {fix}")


class StoreError(CorralError):
    """The state store cannot be opened, migrated or written."""


class RunNotFound(StoreError):
    """No run (or task) matches the given id."""


class StateError(CorralError):
    """A task or run state change that the transition table of :mod:`corral.states` does not
    allow: a bug in Corral, reported rather than recorded."""


class RunLockedError(CorralError):
    """Another live engine owns this run."""


class ExecutorError(CorralError):
    """An executor failed to submit, poll or cancel."""


class CommandError(ExecutorError):
    """An external command (sbatch, qstat, ssh ...) failed."""

    transient = True

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        super().__init__(f"command {self.argv[0]!r} exited with {returncode}: {last}")


class TaskFailed(CorralError):
    """A task failed after all of its retries."""

    def __init__(self, task: str, message: str) -> None:
        self.task = task
        super().__init__(f"task {task} failed: {message}")
