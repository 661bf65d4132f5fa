"""The typed resource request of a task, translated by each executor.

``Resources`` is one model for every scheduler: cores, nodes, memory, walltime, gpus, queue,
account, constraint, qos, exclusive, plus free-form ``native`` options per scheduler kind
(``native={"slurm": ["--reservation=big"]}``). Parallel (MPI) jobs add ``tasks`` (ranks),
``tasks_per_node`` and ``cores_per_task``, and ``launcher`` says how the ranks are started.
Memory accepts ``"2G"``/``"512M"``/bytes; walltime accepts ``"10m"``, ``"2h"``, ``"1:30:00"``,
``"1-00:00:00"`` or seconds.

A task's resources may also be a function of the attempt number (1-based), so a retry after an
out-of-memory failure can ask for more: ``resources=lambda attempt: Resources(memory=f"{2*attempt}G")``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from corral.errors import ResourceError

_V = TypeVar("_V")

LAUNCHERS = ("srun", "mpirun", "mpiexec", "mpi", "none")
"""Valid values of ``launcher`` (``mpi``: the executor's MPI launcher, ``srun`` on SLURM)."""
_MEM_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)
_TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$", re.IGNORECASE)


def parse_memory(value: int | float | str | None) -> int | None:
    """Return a memory amount in bytes from ``"2G"``, ``"512MB"``, ``"1.5GiB"`` or a number."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ResourceError(f"memory={value!r} is not a size; write e.g. memory='2G'")
    if isinstance(value, int | float):
        if value <= 0:
            raise ResourceError(f"memory={value!r} must be positive; write e.g. memory='2G'")
        return int(value)
    m = _MEM_RE.match(str(value))
    if not m:
        raise ResourceError(f"memory={value!r} is not a size; write e.g. memory='2G' or '512M'")
    number = float(m.group(1)) * _MEM_UNITS[m.group(2).upper()]
    if number <= 0:
        raise ResourceError(f"memory={value!r} must be positive; write e.g. memory='2G'")
    return int(number)


def parse_walltime(value: int | float | str | None) -> int | None:
    """Return a duration in whole seconds from ``"10m"``, ``"1:30:00"``, ``"1-00:00:00"`` or seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ResourceError(f"walltime={value!r} is not a duration; write e.g. walltime='10m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        m = _TIME_RE.match(text)
        if m:
            seconds = float(m.group(1)) * _TIME_UNITS[m.group(2).lower()]
        else:
            seconds = _parse_clock(text)
    if seconds <= 0:
        raise ResourceError(f"walltime={value!r} must be positive; write e.g. walltime='10m'")
    return int(math.ceil(seconds))


def _parse_clock(text: str) -> float:
    days = 0
    if "-" in text:
        d, _, text = text.partition("-")
        if not d.isdigit():
            raise ResourceError(f"walltime={text!r} is not a duration; write e.g. '1-00:00:00'")
        days = int(d)
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ResourceError(
            f"walltime={text!r} is not a duration; write e.g. walltime='10m' or '01:30:00'"
        )
    nums = [int(p) for p in parts]
    while len(nums) < 3:
        nums.insert(0, 0)
    h, m, s = nums
    return days * 86400 + h * 3600 + m * 60 + s


def format_memory(nbytes: int | float | None) -> str:
    """Human-readable size: 1536 MiB -> '1.5G'."""
    if nbytes is None:
        return "-"
    n = float(nbytes)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}".replace(".0", "")
        n /= 1024
    return f"{n:.1f}T"  # pragma: no cover


def format_walltime(seconds: int | None) -> str:
    """Return ``HH:MM:SS`` (days folded into hours) for a duration in seconds."""
    if seconds is None:
        return ""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


@dataclass(frozen=True)
class Resources:
    """What one attempt of a task asks for. Every field is optional and scheduler-neutral."""

    cores: int = 1
    """CPU cores for the task (on one node unless ``nodes`` > 1)."""
    memory: int | str | None = None
    """Memory for the whole task, in bytes after normalisation (``"2G"`` accepted)."""
    walltime: int | str | None = None
    """Wall-clock limit, in seconds after normalisation (``"10m"``, ``"1:00:00"`` accepted)."""
    gpus: int = 0
    """GPUs (generic resources on SLURM)."""
    nodes: int = 1
    """Nodes; tasks asking for more than one need a scheduler that supports it."""
    queue: str | None = None
    """Partition (SLURM) or queue (SGE, PBS, LSF)."""
    account: str | None = None
    """Account (SLURM), project (SGE, LSF) or account string (PBS)."""
    constraint: str | None = None
    """Node feature constraint."""
    qos: str | None = None
    """Quality of service."""
    exclusive: bool = False
    """Whole nodes, not shared with other jobs."""
    native: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Extra scheduler arguments by executor kind, e.g. ``{"slurm": ["--reservation=big"]}``."""
    tasks: int | None = None
    """Ranks of a parallel (MPI) job in all (default: ``nodes`` x ``tasks_per_node``)."""
    tasks_per_node: int | None = None
    """Ranks on each node (default: ``tasks`` spread evenly over ``nodes``)."""
    cores_per_task: int | None = None
    """Cores of each rank (default: ``cores``); a parallel job takes ranks x cores_per_task."""
    launcher: str | None = None
    """How the command starts its ranks: ``srun``, ``mpirun``, ``mpiexec``, ``mpi`` (the
    executor's MPI launcher) or ``none``; ``None`` leaves it to the executor's ``launcher``
    option. Set by ``launcher=`` of :func:`corral.task` and :func:`corral.shell`."""

    def __post_init__(self) -> None:
        for name in ("cores", "nodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ResourceError(f"{name}={v!r} must be a positive integer; write e.g. {name}=2")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0:
            raise ResourceError(f"gpus={self.gpus!r} must be an integer >= 0; write e.g. gpus=1")
        object.__setattr__(self, "memory", parse_memory(self.memory))
        object.__setattr__(self, "walltime", parse_walltime(self.walltime))
        native: dict[str, tuple[str, ...]] = {}
        for kind, args in dict(self.native).items():
            if isinstance(args, str):
                raise ResourceError(
                    f"native[{kind!r}] must be a list of arguments, not a string; "
                    f"write native={{{kind!r}: [{args!r}]}}"
                )
            native[str(kind)] = tuple(str(a) for a in args)
        object.__setattr__(self, "native", native)
        for name in ("queue", "account", "constraint", "qos"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v or "\n" in v or "\0" in v):
                raise ResourceError(f"{name}={v!r} must be a one-line non-empty string")
        self._check_parallel()

    def _check_parallel(self) -> None:
        for name in ("tasks", "tasks_per_node", "cores_per_task"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ResourceError(f"{name}={v!r} must be a positive integer; write e.g. {name}=4")
        if self.cores_per_task is not None and self.cores not in (1, self.cores_per_task):
            raise ResourceError(
                f"cores={self.cores} and cores_per_task={self.cores_per_task} disagree; "
                "give only cores_per_task for the cores of each rank"
            )
        if self.tasks is not None and self.tasks < self.nodes:
            raise ResourceError(
                f"tasks={self.tasks} is fewer than nodes={self.nodes}; every node needs a rank: "
                f"write tasks>={self.nodes} or nodes<={self.tasks}"
            )
        tpn = self.tasks_per_node
        if self.tasks is not None and tpn is not None and self.tasks != self.nodes * tpn:
            raise ResourceError(
                f"tasks={self.tasks} is not nodes x tasks_per_node ({self.nodes} x {tpn}); "
                "give tasks or tasks_per_node, or make them agree"
            )
        if self.launcher is not None and self.launcher not in LAUNCHERS:
            raise ResourceError(
                f"launcher={self.launcher!r} is not one of {', '.join(LAUNCHERS)}; "
                "write e.g. launcher='mpi'"
            )

    @property
    def parallel(self) -> bool:
        """A multi-rank job: ``tasks`` or ``tasks_per_node`` was given."""
        return self.tasks is not None or self.tasks_per_node is not None

    @property
    def ranks(self) -> int:
        """Ranks in all (1 unless ``tasks`` or ``tasks_per_node`` is given)."""
        if self.tasks is not None:
            return self.tasks
        return self.nodes * self.tasks_per_node if self.tasks_per_node is not None else 1

    @property
    def ranks_per_node(self) -> int:
        """Most ranks on one node (``tasks`` spread evenly, rounded up)."""
        if self.tasks_per_node is not None:
            return self.tasks_per_node
        return -(-self.ranks // self.nodes)

    @property
    def rank_cores(self) -> int:
        """Cores of each rank."""
        return self.cores_per_task or self.cores

    @property
    def total_cores(self) -> int:
        """Cores of the whole job on one machine: ranks x cores of each rank."""
        return self.ranks * self.rank_cores

    @property
    def memory_bytes(self) -> int | None:
        """Memory in bytes (``None`` when not requested)."""
        return self.memory if isinstance(self.memory, int) else None

    @property
    def walltime_seconds(self) -> int | None:
        """Walltime in seconds (``None`` when not requested)."""
        return self.walltime if isinstance(self.walltime, int) else None

    def replace(self, **changes: Any) -> Resources:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def merged(self, defaults: Resources | None) -> Resources:
        """Fill fields left at their default from ``defaults`` (e.g. a profile's defaults)."""
        if defaults is None:
            return self
        blank = Resources()
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            mine = getattr(self, f.name)
            if mine == getattr(blank, f.name):
                changes[f.name] = getattr(defaults, f.name)
        native = {**dict(defaults.native), **dict(self.native)}
        changes["native"] = native
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (memory in bytes, walltime in seconds). A fresh dict each call."""
        cached: dict[str, Any] | None = self.__dict__.get("_dict")
        if cached is None:
            cached = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
            cached["native"] = {k: list(v) for k, v in self.native.items()}
            object.__setattr__(self, "_dict", cached)
        return {**cached, "native": {k: list(v) for k, v in cached["native"].items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resources:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ResourceError(
                f"unknown resource field(s) {sorted(unknown)}; valid fields are {sorted(names)}"
            )
        return cls(**dict(data))


ResourcesSpec = Resources | Callable[[int], Resources] | None
"""What a task may declare: fixed resources, a function of the attempt number, or nothing."""


_DEFAULT = Resources()


def resolve_resources(spec: ResourcesSpec, attempt: int) -> Resources:
    """Resources for a 1-based attempt number."""
    if spec is None:
        return _DEFAULT
    if isinstance(spec, Resources):
        return spec
    result = spec(attempt)
    if not isinstance(result, Resources):
        raise ResourceError(
            f"the resources function returned {type(result).__name__}, not Resources; "
            "return e.g. Resources(memory=f'{2*attempt}G')"
        )
    return result


class PerResources(Generic[_V]):
    """A value computed once per Resources object (and attempt), for the hot paths that ask
    again for every task of a map (whose tasks share one Resources object): held with the
    object, so its id is not reused meanwhile; emptied past :attr:`LIMIT` objects rather than
    grown for ever (a resources function makes one object per attempt)."""

    LIMIT = 1024

    def __init__(self, make: Callable[[Resources, int], _V]) -> None:
        self._make = make
        self._values: dict[tuple[int, int], tuple[Resources, _V]] = {}

    def get(self, res: Resources, attempt: int = 0) -> _V:
        known = self._values.get((id(res), attempt))
        if known is None or known[0] is not res:
            if len(self._values) > self.LIMIT:
                self._values.clear()
            known = self._values[id(res), attempt] = (res, self._make(res, attempt))
        return known[1]
