"""Typed settings of the batch executors, built from profile options by one rule.

Every profile option is a field of a settings dataclass; ``parse_settings`` checks names and types
and raises :class:`corral.errors.ConfigError` with a one-line message naming the valid options.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from corral.errors import ConfigError
from corral.resources import LAUNCHERS
from corral.transport.staging import CLEANUP_CHOICES

CONTAINER_RUNTIMES = ("apptainer", "singularity", "docker")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class BatchSettings:
    """Options common to every batch executor (SLURM, SGE, PBS, LSF)."""

    python: str = ""
    """Interpreter on the compute nodes (default: the engine's interpreter)."""
    modules: list[str] = field(default_factory=list)
    """Environment modules to load (``module load X``) before the worker starts."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the worker, e.g. ``source /opt/venv/bin/activate``."""
    container: str | None = None
    """Image to run the worker in."""
    container_runtime: str = "apptainer"
    """``apptainer``, ``singularity`` or ``docker``."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables exported in every job script."""
    max_jobs: int | None = None
    """Most jobs (array elements count one each) queued or running at once."""
    array_throttle: int = 50
    """Most elements of one array job running at once (``%N``)."""
    poll_interval: float = 1.0
    """First interval between scheduler status queries; backs off when nothing changes."""
    max_poll_interval: float = 30.0
    """Longest interval between scheduler status queries."""
    marker_interval: float = 0.5
    """Interval between scans of exit markers in the attempt directories."""
    lost_grace: float = 30.0
    """Seconds a job may be finished (or unknown) without its exit marker before it is LOST."""
    kill_grace: float = 2.0
    """Seconds to wait for a marker after the scheduler reports a failed or killed job."""
    submit_timeout: float = 60.0
    """Timeout of one submit command."""
    limit_backoff: float = 10.0
    """Seconds to wait before retrying a submission the scheduler refused for a job limit."""
    extra_args: list[str] = field(default_factory=list)
    """Extra scheduler options written as directives into every job script."""
    remote_workdir: str = "~/.corral/remote"
    """Where attempt directories live on the scheduler's side when the transport does not
    share the work directory (``shared_filesystem = false``); ``~`` is the remote home."""
    launcher: str = "none"
    """Launcher of parallel tasks that name none: ``mpi`` (``srun`` on SLURM, ``mpirun``
    elsewhere), ``srun``, ``mpirun``, ``mpiexec`` or ``none``."""
    launcher_args: list[str] = field(default_factory=list)
    """Extra arguments of the launcher, e.g. ``["--mpi=pmix"]`` for srun."""
    remote_cleanup: str = "succeeded"
    """Which of those remote attempt directories are removed once their files are fetched
    back: ``succeeded`` (failed ones are kept for inspection), ``all`` or ``none``."""

    def check(self) -> None:
        """Validate values (names and types are checked by :func:`parse_settings`)."""
        if self.container_runtime not in CONTAINER_RUNTIMES:
            raise ConfigError(
                f"container_runtime={self.container_runtime!r} is not one of "
                f"{', '.join(CONTAINER_RUNTIMES)}"
            )
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"launcher={self.launcher!r} is not one of {', '.join(LAUNCHERS)}")
        if self.remote_cleanup not in CLEANUP_CHOICES:
            raise ConfigError(
                f"remote_cleanup={self.remote_cleanup!r} is not one of {', '.join(CLEANUP_CHOICES)}"
            )
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ConfigError(f"max_jobs={self.max_jobs} must be >= 1 (or left unset)")
        if self.array_throttle < 1:
            raise ConfigError(f"array_throttle={self.array_throttle} must be >= 1")
        for name in ("poll_interval", "max_poll_interval", "marker_interval", "submit_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be > 0 seconds")
        for name in ("lost_grace", "kill_grace", "limit_backoff"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0 seconds")
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise ConfigError(f"env name {key!r} is not a valid shell variable name")
        for line in [*self.modules, *self.setup, *self.extra_args, *self.env.values(),
                     *self.launcher_args]:
            if "\n" in line or "\r" in line or "\0" in line:
                raise ConfigError(f"option value {line!r} must be a single line")


S = TypeVar("S", bound=BatchSettings)


def parse_settings(cls: type[S], options: Mapping[str, Any], kind: str) -> S:
    """Build ``cls`` from profile options: unknown names and wrong types are a ConfigError."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for executor {kind!r}; "
            f"valid options are: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(kind, name, value, hints[name]) for name, value in options.items()}
    settings = cls(**values)
    settings.check()
    return settings


def _coerce(kind: str, name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a field's type hint; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(kind, name, value, inner[0])
    ok: bool
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is list:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        value = list(value) if ok else value
    elif origin is dict:
        ok = isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in value.items()
        )
        value = {str(k): str(v) for k, v in value.items()} if ok else value
    else:  # pragma: no cover - every field type is listed above
        ok = True
    if not ok:
        expected = getattr(hint, "__name__", str(hint))
        raise ConfigError(
            f"option {name}={value!r} of executor {kind!r} must be of type {expected}"
        )
    return value
