"""Executors by name, found through the ``corral.executors`` entry-point group.

Corral's own executors (local, slurm, sge, pbs, lsf, ssh, dask, tes) are registered in its
``pyproject.toml`` exactly as a third-party package registers one::

    [project.entry-points."corral.executors"]
    mycloud = "corral_mycloud:MyCloudExecutor"

The entry points are read once, on the first lookup (a few milliseconds), and a module is
imported only when its executor is used. :func:`register` adds one for this process (tests).
See docs/executors/writing.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from corral.errors import ConfigError
from corral.executors.base import Executor, ExecutorContext
from corral.optional import require

GROUP = "corral.executors"
"""The entry-point group executors are registered in."""

_OWN_DISTRIBUTION = "corral"


@dataclass(frozen=True)
class Registration:
    """One executor name: where its class is (``module:Class``) and which package says so."""

    name: str
    target: str
    package: str | None = None
    """The distribution that registered it (``None``: :func:`register` in this process)."""

    @property
    def builtin(self) -> bool:
        return self.package == _OWN_DISTRIBUTION


class _Registry(Mapping[str, Registration]):
    """Executor names to registrations; entry points are read on first use, then kept."""

    def __init__(self) -> None:
        self._found: dict[str, list[Registration]] | None = None
        self._added: dict[str, Registration] = {}

    def _entry_points(self) -> dict[str, list[Registration]]:
        if self._found is None:
            from importlib.metadata import entry_points

            found: dict[str, list[Registration]] = {}
            for ep in entry_points(group=GROUP):
                package = ep.dist.name if ep.dist is not None else None
                regs = found.setdefault(ep.name, [])
                if all(r.package != package for r in regs):  # one dist seen on two paths
                    regs.append(Registration(ep.name, ep.value, package))
            self._found = found
        return self._found

    def _names(self) -> set[str]:
        return set(self._entry_points()) | set(self._added)

    def __getitem__(self, name: str) -> Registration:
        return self.candidates(name)[0]

    def candidates(self, name: str) -> list[Registration]:
        """Every registration of ``name`` (more than one: two packages claim it)."""
        if name in self._added:
            return [self._added[name]]
        return self._entry_points()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._added or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names()))

    def __len__(self) -> int:
        return len(self._names())

    def add(self, name: str, target: str) -> None:
        self._added[name] = Registration(name, target)

    def remove(self, name: str) -> None:
        self._added.pop(name, None)


EXECUTORS: Mapping[str, Registration] = _Registry()
"""Every executor name (read-only; see :func:`register`)."""


def register(name: str, target: str) -> None:
    """Make ``target`` (``"module:Class"``) the executor ``name`` in this process, ahead of any
    entry point of that name (tests and embedding programs; packages use entry points)."""
    module, sep, attr = target.partition(":")
    if not (module and sep and attr):
        raise ValueError(f"executor target {target!r} must be 'module:Class'")
    _registry().add(name, target)


def unregister(name: str) -> None:
    """Undo :func:`register` (entry points stay)."""
    _registry().remove(name)


def _registry() -> _Registry:
    assert isinstance(EXECUTORS, _Registry)
    return EXECUTORS


def available() -> list[str]:
    """The executor names, sorted."""
    return list(EXECUTORS)


def executor_class(kind: str) -> type[Executor]:
    """The executor class registered under ``kind`` (imports its module)."""
    if kind not in EXECUTORS:
        names = ", ".join(EXECUTORS) or f"none: no package registers {GROUP} entry points"
        raise ConfigError(f"unknown executor {kind!r}; choose one of {names} "
                          "or a profile defined in corral.toml")
    regs = _registry().candidates(kind)
    if len(regs) > 1:
        packages = " and ".join(sorted(str(r.package) for r in regs))
        raise ConfigError(f"executor {kind!r} is registered by both {packages}; uninstall one of them")
    reg = regs[0]
    module_name, _, attr = reg.target.partition(":")
    if reg.builtin:  # Corral's own: a missing optional dependency names the extra to install
        cls = getattr(require(module_name, f"executor {kind!r}", kind), attr)
    else:
        cls = _load(reg, module_name, attr)
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ConfigError(f"executor {kind!r} ({reg.target}{_from(reg)}) is not a subclass of "
                          "corral.executors.base.Executor")
    if getattr(cls, "kind", None) != kind:
        raise ConfigError(f"executor {kind!r} ({reg.target}{_from(reg)}) has kind = "
                          f"{getattr(cls, 'kind', None)!r}; its kind must be its registered name")
    return cls


def _load(reg: Registration, module_name: str, attr: str) -> Any:
    """Import a third-party executor; any failure is one line naming the package."""
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except Exception as exc:  # a plug-in may fail in any way while importing
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"executor {reg.name!r}{_from(reg)} failed to load {reg.target}: "
            f"{type(exc).__name__}{': ' + detail if detail else ''}; fix or uninstall "
            f"{reg.package or 'it'}"
        ) from exc


def _from(reg: Registration) -> str:
    return f" from package {reg.package!r}" if reg.package else ""


def create_executor(kind: str, options: Mapping[str, Any], ctx: ExecutorContext) -> Executor:
    """Build an executor from its kind and profile options (unknown options are an error)."""
    return executor_class(kind).from_options(dict(options), ctx)


__all__ = [
    "EXECUTORS",
    "GROUP",
    "Executor",
    "ExecutorContext",
    "Registration",
    "available",
    "create_executor",
    "executor_class",
    "register",
    "unregister",
]
