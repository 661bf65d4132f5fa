"""Pipeline parameters: typed from the function signature, checked before anything runs."""

from __future__ import annotations

import enum
import inspect
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.errors import ParameterError

if typing.TYPE_CHECKING:
    from corral.model import Pipeline

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def signature_params(pipeline: Pipeline[Any, Any]) -> dict[str, tuple[Any, Any]]:
    """{name: (type, default)} of a pipeline's parameters (default ``inspect._empty``)."""
    sig = inspect.signature(pipeline.func)
    hints = typing.get_type_hints(pipeline.func)
    out: dict[str, tuple[Any, Any]] = {}
    for name, p in sig.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        typ = hints.get(name, type(p.default) if p.default is not p.empty else str)
        out[name] = (typ, p.default)
    return out


def convert(name: str, typ: Any, value: Any) -> Any:
    """Convert a value (often a command-line string) to ``typ``; ParameterError if impossible."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return convert(name, a, value)
            except ParameterError as exc:
                errors.append(str(exc))
        raise ParameterError(errors[0] if errors else f"--{name}: cannot convert {value!r}")
    if origin is typing.Literal:
        for a in args:
            if str(a) == str(value):
                return a
        raise ParameterError(f"--{name} must be one of {', '.join(map(str, args))}, not {value!r}")
    if origin in (list, tuple):
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        inner = args[0] if args else str
        return origin(convert(name, inner, v) for v in items if v != "")
    if typ is Any or typ is inspect.Parameter.empty:
        return value
    if isinstance(value, typ) and not (typ is int and isinstance(value, bool)):
        return value
    try:
        if typ is bool:
            text = str(value).lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if isinstance(typ, type) and issubclass(typ, enum.Enum):
            return typ[value] if value in typ.__members__ else typ(value)
        if typ in (int, float) and isinstance(value, bool):
            raise ValueError  # int(True) == 1 would hide a mistake
        if typ in (int, float, str, Path):
            return typ(value)
    except (ValueError, KeyError, TypeError):
        tname = getattr(typ, "__name__", str(typ))
        raise ParameterError(f"--{name} expects {tname}, got {value!r}; e.g. --{name} "
                             f"{_example(typ)}") from None
    return value


def _example(typ: Any) -> str:
    return {int: "14", float: "0.5", bool: "true", str: "text", Path: "data/in.csv"}.get(typ, "...")


def check_params(pipeline: Pipeline[Any, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Values for every parameter: given ones converted, others from defaults."""
    spec = signature_params(pipeline)
    unknown = [k for k in given if k not in spec]
    if unknown:
        known = ", ".join(f"--{k}" for k in spec) or "none"
        raise ParameterError(
            f"pipeline {pipeline.name} has no parameter --{unknown[0]}; its parameters are {known}"
        )
    values: dict[str, Any] = {}
    for name, (typ, default) in spec.items():
        if name in given:
            values[name] = convert(name, typ, given[name])
        elif default is inspect.Parameter.empty:
            raise ParameterError(f"pipeline {pipeline.name} needs --{name} (no default)")
        else:
            values[name] = default
    return values


def shadowed_param(pipeline: Pipeline[Any, Any], flags: list[str], given: set[str]) -> str | None:
    """The first of ``flags`` (long options the command line gave to the command itself, e.g.
    ``--token`` of ``corral run``) that is also a flag of a parameter of ``pipeline``
    (``--name``, ``--na-me``, ``--no-name`` of a bool) not in ``given``: a value the user
    meant for the pipeline would be taken by the command, and the parameter left at its
    default without a word."""
    if not flags:
        return None  # (the usual case: no need to read the signature a second time)
    spec = signature_params(pipeline)
    for flag in flags:
        name = flag.removeprefix("--").replace("-", "_")
        if name.startswith("no_") and name not in spec and spec.get(name[3:], (None,))[0] is bool:
            name = name[3:]
        if name in spec and name not in given:
            return flag
    return None


def parse_cli_params(pipeline: Pipeline[Any, Any], args: list[str]) -> dict[str, Any]:
    """``["--degree", "14", "--flag"]`` or ``["--degree=14"]`` -> {"degree": "14", ...}."""
    spec = signature_params(pipeline)
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ParameterError(f"unexpected argument {arg!r}; pass parameters as --name value")
        name, eq, val = arg[2:].partition("=")
        name = name.replace("-", "_")
        typ = spec.get(name, (str, None))[0]
        if not eq:
            if typ is bool and (i + 1 >= len(args) or args[i + 1].startswith("--")):
                val = "true"
            elif name.startswith("no_") and spec.get(name[3:], (None,))[0] is bool:
                name, val = name[3:], "false"
            elif i + 1 < len(args):
                i += 1
                val = args[i]
            else:
                raise ParameterError(f"--{name} needs a value")
        out[name] = val
        i += 1
    return out
