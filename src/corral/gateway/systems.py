"""HPC systems: the named executor profiles the gateway runs jobs on, each with its limits.

A system is an executor profile of ``corral.toml`` (or a bare executor kind: ``local``, ``slurm``,
``sge`` ...) plus the limits a job must fit before anything is submitted. They are read from
``<workdir>/gateway.toml``::

    [systems.cluster]
    executor = "slurm-debug"    # a profile of <workdir>/corral.toml, or an executor kind
    max_nodes = 2
    max_cores_per_node = 4
    max_walltime_hours = 12
    queues = ["debug"]          # allowed queues; the first is the default
    max_memory_gb = 64          # memory per node a job may ask for (default: no limit)
    [systems.cluster.options]   # executor options on top of the profile's (optional)
    poll_interval = 1.0

Without the file there is one system, ``local``: the gateway's machine, one node, its cores.

A job's ``backend_parameters`` are scheduler parameters from the allowlist of its system's kind
(:data:`BACKEND_KEYS`: ``account``, ``qos`` and ``constraint`` on SLURM, ``project`` on Grid
Engine), each value a plain name (:data:`BACKEND_VALUE`), handed to the executor's typed
:class:`corral.resources.Resources` (whose directives check them again): nothing reaches a job
script unquoted.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from corral.config import load_config
from corral.errors import ConfigError
from corral.executors import ExecutorContext, executor_class

from .store import GatewayError, JobRequest, SystemCheck, Unprocessable

SYSTEMS_FILE = "gateway.toml"
LIMIT_KEYS = ("max_nodes", "max_cores_per_node", "max_walltime_hours", "queues", "max_memory_gb")
BACKEND_KEYS: Mapping[str, Mapping[str, str]] = {
    "slurm": {"account": "account", "qos": "qos", "constraint": "constraint"},
    "sge": {"project": "account"},
}
"""Per executor kind, the backend parameters a job may give, and the field of
:class:`corral.resources.Resources` each one sets."""
BACKEND_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
"""A backend parameter's value: a name of letters, digits and ``._@+-``, at most 100 characters."""


@dataclass(frozen=True)
class HpcSystem:
    """One system: its executor kind and options, and the limits of one job on it."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    max_nodes: int = 1
    max_cores_per_node: int = 1
    max_walltime_hours: float = 24.0
    queues: tuple[str, ...] = ()
    """Queues (partitions) a job may name; the first is the default; empty: the executor's own."""
    max_memory_gb: float | None = None
    """Memory per node a job may ask for; None: no limit of the gateway's (the scheduler's apply)."""

    @property
    def backend_keys(self) -> tuple[str, ...]:
        """The backend parameters a job on this system may give."""
        return tuple(sorted(BACKEND_KEYS.get(self.kind, {})))

    def vet(self, req: JobRequest) -> JobRequest:
        """``req`` as it runs here: within the limits (:meth:`check`), its queue chosen, its
        memory within ``max_memory_gb`` and its backend parameters of the allowlist (a 422
        naming the allowed keys otherwise; unknown ones are dropped if not ``backend_strict``)."""
        queue = self.check(req)
        where = f"HPC system {self.name!r}"
        if req.pipeline_file is not None and (req.memory_gb is not None or req.backend):
            raise GatewayError("a pipeline job takes no memory_gb or backend_parameters: its tasks declare "
                               "their own resources (Resources in the pipeline file); leave them out")
        if req.memory_gb is not None and self.max_memory_gb is not None and req.memory_gb > self.max_memory_gb:
            raise GatewayError(f"{where} allows at most {self.max_memory_gb:g} GB of memory per node; "
                               f"this job asks for {req.memory_gb:g} GB")
        allowed = self.backend_keys
        unknown = sorted(key for key, _ in req.backend if key not in allowed)
        if unknown and req.backend_strict:
            raise Unprocessable(f"{where} ({self.kind}) takes no backend parameter {', '.join(unknown)}; "
                                f"allowed: {', '.join(allowed) or 'none'}")
        kept = tuple(sorted((k, v) for k, v in req.backend if k in allowed))
        for key, value in kept:
            if not BACKEND_VALUE.fullmatch(value):
                raise Unprocessable(f"backend parameter {key}={value[:120]!r} is not a plain name; use letters, "
                                    "digits and ._@+- (at most 100 characters)")
        return replace(req, queue=queue, backend=kept)

    def check(self, req: JobRequest) -> str | None:
        """The queue the job runs in (None: the executor's default); a 400 naming the limit a
        job exceeds, before anything is submitted."""
        where = f"HPC system {self.name!r}"
        if req.nodes > self.max_nodes:
            raise GatewayError(f"{where} allows at most {self.max_nodes} node(s) per job; "
                               f"this job asks for {req.nodes}")
        if req.cores_per_node > self.max_cores_per_node:
            raise GatewayError(f"{where} allows at most {self.max_cores_per_node} core(s) per node; "
                               f"this job asks for {req.cores_per_node}")
        if req.walltime_hours > self.max_walltime_hours:
            raise GatewayError(f"{where} allows a walltime of at most {self.max_walltime_hours:g} h; "
                               f"this job asks for {req.walltime_hours:g} h")
        if req.queue is None:
            return self.queues[0] if self.queues else None
        if req.queue not in self.queues:
            allowed = ", ".join(self.queues) or "none (leave queue out)"
            raise GatewayError(f"{where} has no queue {req.queue!r}; queues: {allowed}")
        return req.queue

    def describe(self) -> dict[str, Any]:
        """What the API shows: the name, the executor kind and the limits (no options: they may
        name hosts and accounts)."""
        return {"name": self.name, "kind": self.kind, "max_nodes": self.max_nodes,
                "max_cores_per_node": self.max_cores_per_node,
                "max_walltime_hours": self.max_walltime_hours, "queues": list(self.queues),
                "max_memory_gb": self.max_memory_gb, "backend_parameters": list(self.backend_keys)}


def local_system() -> HpcSystem:
    return HpcSystem("local", "local", {}, max_nodes=1, max_cores_per_node=os.cpu_count() or 1)


def load_systems(workdir: Path, path: Path | None = None) -> dict[str, HpcSystem]:
    """The systems of ``<workdir>/gateway.toml`` (or ``path``); only ``local`` without one."""
    path = path or workdir / SYSTEMS_FILE
    if not path.is_file():
        return {"local": local_system()}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the file") from None
    tables = data.get("systems")
    if set(data) - {"systems", "tools"} or not isinstance(tables, dict) or not tables:
        raise ConfigError(f"{path}: write HPC systems as [systems.NAME] tables (and tools in [tools]), "
                          "and nothing else")
    load_tools(workdir, path)  # a bad [tools] stops the gateway at start too
    config = load_config(workdir)
    return {name: _system(path, name, table, config.executor) for name, table in tables.items()}


def _check_options(kind: str, options: dict[str, Any], workdir: Path) -> None:
    """Build the executor once from its options (nothing slow: no connection, no job), so that an
    unknown option or a bad value stops ``serve`` at start, not the first job."""
    ctx = ExecutorContext(run_id="gateway-check", work_root=workdir, cwd=workdir, max_parallel=1)
    executor_class(kind).from_options(dict(options), ctx)


def _system(path: Path, name: str, table: Any, resolve: Any) -> HpcSystem:
    where = f"{path}: [systems.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - {"executor", "options", *LIMIT_KEYS})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"keys are executor, options, {', '.join(LIMIT_KEYS)}")
    extra = table.get("options", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: options must be a table")
    try:
        kind, options = resolve(str(table.get("executor", name)))
        _check_options(kind, {**options, **extra}, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    try:
        default = HpcSystem(name, kind)
        system = HpcSystem(name, kind, {**options, **extra},
                           max_nodes=int(table.get("max_nodes", default.max_nodes)),
                           max_cores_per_node=int(table.get("max_cores_per_node", default.max_cores_per_node)),
                           max_walltime_hours=float(table.get("max_walltime_hours", default.max_walltime_hours)),
                           queues=tuple(str(q) for q in table.get("queues", ())),
                           max_memory_gb=None if "max_memory_gb" not in table else float(table["max_memory_gb"]))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: limits must be numbers and queues a list of names ({exc})") from None
    if min(system.max_nodes, system.max_cores_per_node) < 1 or system.max_walltime_hours <= 0 or (
            system.max_memory_gb is not None and system.max_memory_gb <= 0):
        raise ConfigError(f"{where}: max_nodes and max_cores_per_node must be >= 1, max_walltime_hours and "
                          "max_memory_gb > 0")
    return system


def load_tools(workdir: Path, path: Path | None = None) -> dict[str, tuple[str, ...]]:
    """The named applications of ``[tools]`` in gateway.toml (the seed descriptor's ``"tool"``):
    each an argument list a job's ``command`` is appended to, e.g. ``nrniv = ["nrniv", "-nobanner"]``."""
    path = path or workdir / SYSTEMS_FILE
    if not path.is_file():
        return {}
    try:
        tools = tomllib.loads(path.read_text()).get("tools", {})
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the file") from None
    if not isinstance(tools, dict) or not all(
            isinstance(v, list) and v and all(isinstance(a, str) for a in v) for v in tools.values()):
        raise ConfigError(f"{path}: [tools] maps names to argument lists, e.g. nrniv = [\"nrniv\", \"-nobanner\"]")
    return {name: tuple(argv) for name, argv in tools.items()}


def tool_command(tools: Mapping[str, tuple[str, ...]], tool: str, args: str) -> str:
    """The command line of a job of ``tool`` with ``args`` (split as the shell would, then quoted)."""
    if tool not in tools:
        raise GatewayError(f"no tool {tool!r} on this gateway; tools: {', '.join(sorted(tools)) or 'none'}")
    try:
        extra = shlex.split(args)
    except ValueError as exc:
        raise GatewayError(f"command: {exc}") from None
    return shlex.join([*tools[tool], *extra])


def checker(systems: Mapping[str, HpcSystem]) -> SystemCheck:
    """The store's ``check`` of submissions against ``systems`` (see :meth:`HpcSystem.vet`)."""

    def check(name: str, req: JobRequest) -> JobRequest:
        if name not in systems:
            raise GatewayError(f"the project's HPC system {name!r} is not configured on this gateway "
                               f"(systems: {', '.join(sorted(systems))}); an admin moves the project")
        return systems[name].vet(req)

    return check
