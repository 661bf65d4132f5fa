"""Turning futures into values: loading stored results and formatting shell commands."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from corral.graph import Future
from corral.model import ShellSpec


@dataclass(frozen=True)
class GatherRef:
    """Stored value of a dynamic gather: the keys of its elements, loaded on demand."""

    keys: list[str]


def substitute(value: Any, load: Callable[[Future], Any]) -> Any:
    """A copy of ``value`` with every future replaced by its value."""
    if isinstance(value, Future):
        return load(value)
    if isinstance(value, list):
        return [substitute(v, load) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, load) for v in value)
    if isinstance(value, dict):
        return {k: substitute(v, load) for k, v in value.items()}
    return value


class _Quoted:
    """A value in a command template: ``str()`` gives the quoted, space-joined paths;
    ``.name``/``[i]`` give one element."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __str__(self) -> str:
        return " ".join(shlex.quote(str(v)) for v in _flatten(self.value))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __getattr__(self, name: str) -> _Quoted:
        if isinstance(self.value, dict) and name in self.value:
            return _Quoted(self.value[name])
        raise AttributeError(name)

    def __getitem__(self, item: Any) -> _Quoted:
        return _Quoted(self.value[item])


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _flatten(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _flatten(v)]
    return [] if value is None else [value]


def format_command(spec: ShellSpec, inputs: Any, params: dict[str, Any]) -> str:
    """The command line with ``{input}``, ``{output}`` and ``{params.x}`` substituted, quoted."""
    fields = {"input": _Quoted(inputs), "inputs": _Quoted(inputs), "output": _Quoted(spec.outputs),
              "outputs": _Quoted(spec.outputs), "params": _Quoted(params)}
    return spec.command.format(**fields)


def shell_value(spec: ShellSpec) -> Any:
    """What a shell task's future holds: its output path(s) as ``Path`` objects."""
    return _as_paths(spec.outputs)


def _as_paths(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str | PurePath):
        return Path(value)
    if isinstance(value, dict):
        return {k: _as_paths(v) for k, v in value.items()}
    return [_as_paths(v) for v in value]


def output_files(value: Any, cwd: Path) -> list[Path]:
    """Existing files named by a task's return value (Paths inside lists/dicts/tuples)."""
    found: list[Path] = []
    if isinstance(value, PurePath):
        p = Path(cwd, value)
        if p.is_file():
            found.append(p.resolve())
    elif isinstance(value, list | tuple):
        for v in value:
            found.extend(output_files(v, cwd))
    elif isinstance(value, dict):
        for v in value.values():
            found.extend(output_files(v, cwd))
    return found
