"""Command-line values converted without pydantic, for the commands that must start at once.

typer 0.29 converts every parameter of a command through a pydantic ``TypeAdapter`` when the
command is invoked: the first one imports pydantic (about 65 ms on this project's machine) and
each costs a few milliseconds more to build; ``corral run`` has a dozen. Declaring a command with
``cls=PlainParamsCommand`` gives its parameters of the plain kinds (``str``, ``int``, ``bool``,
``Path``, and ``list`` or ``tuple`` of those, optional or not, with none of typer's checks such as ``min`` or
``exists``) a conversion of their own. The values are the ones typer gives (a test compares them
for every parameter so declared); a value that is not plainly well formed (``--jobs x``)
goes on to typer's own conversion, so that its error message is typer's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args, get_origin

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

_UNSURE = object()
"""What a plain conversion returns for a value it leaves to typer."""
_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def _plain_str(value: Any) -> Any:
    return value if isinstance(value, str) else _UNSURE


def _plain_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and _INT.fullmatch(value) else _UNSURE


def _plain_bool(value: Any) -> Any:
    return value if isinstance(value, bool) else _UNSURE


def _plain_path(value: Any) -> Any:
    """As typer's: a ``Path``; one that exists must be readable (else typer says so)."""
    if not isinstance(value, (str, Path)) or value == "":
        return _UNSURE
    path = value if isinstance(value, Path) else Path(value)
    if os.path.lexists(path) and not os.access(path, os.R_OK):
        return _UNSURE
    return path


def _plain_tuple(leaves: tuple[Callable[[Any], Any], ...]) -> Callable[[Any], Any]:
    """The conversion of a fixed number of values (``tuple[str, str]``), each by its leaf."""
    def convert(value: Any) -> Any:
        if not isinstance(value, (list, tuple)) or len(value) != len(leaves):
            return _UNSURE
        items = tuple(leaf(v) for leaf, v in zip(leaves, value, strict=True))
        return _UNSURE if any(item is _UNSURE for item in items) else items

    return convert


LEAVES: dict[Any, Callable[[Any], Any]] = {
    str: _plain_str, int: _plain_int, bool: _plain_bool, Path: _plain_path,
}
"""The annotations converted here, and how."""


class PlainCoercion:
    """What typer asks of a parameter's conversion (``coerce``), without pydantic; values it
    cannot vouch for go to ``typer_coercion``, the parameter's own (built only then)."""

    def __init__(self, leaf: Callable[[Any], Any], many: bool,
                 typer_coercion: Callable[[], Any]) -> None:
        self.leaf = leaf
        self.many = many
        self.typer_coercion = typer_coercion

    def coerce(self, value: Any, param: Any, ctx: Any) -> Any:
        multi = param.multiple or param.nargs == -1
        if value is None:
            return () if multi else None
        if multi != self.many or not (isinstance(value, (list, tuple)) if multi else True):
            return self.typer_coercion().coerce(value, param=param, ctx=ctx)
        items = [self.leaf(v) for v in value] if multi else [self.leaf(value)]
        if any(item is _UNSURE for item in items):
            return self.typer_coercion().coerce(value, param=param, ctx=ctx)
        return items if multi else items[0]


def plain_leaf(param: TyperArgument | TyperOption) -> tuple[Callable[[Any], Any], bool] | None:
    """The plain conversion of a parameter and whether it takes several values, or None when
    typer's own is needed (another type, a file, a range, a parser, a path check ...)."""
    descriptor = param.type_descriptor
    info = descriptor.parameter_info
    path_defaults = (not info.exists and info.file_okay and info.dir_okay and not info.writable
                     and info.readable and not info.resolve_path and not info.allow_dash
                     and info.path_type is None)
    if (info.parser is not None or info.min is not None or info.max is not None or info.clamp
            or descriptor.is_file or not path_defaults):
        return None
    annotation: Any = descriptor.annotation
    if get_origin(annotation) is tuple:
        args = get_args(annotation)
        plain = tuple(LEAVES[arg] for arg in args if arg in LEAVES)
        return (_plain_tuple(plain), False) if args and len(plain) == len(args) else None
    many = get_origin(annotation) is list
    if many:
        (annotation,) = get_args(annotation) or (None,)
    leaf = LEAVES.get(annotation)
    return None if leaf is None else (leaf, many)


def convert_plainly(params: list[Any]) -> None:
    """Give each plain parameter of ``params`` a :class:`PlainCoercion`."""
    for param in params:
        if not isinstance(param, (TyperArgument, TyperOption)) or \
                "get_runtime_param" in vars(param):  # not a typer parameter, or done already
            continue
        plain = plain_leaf(param)
        if plain is not None:
            coercion = PlainCoercion(*plain, typer_coercion=param.get_runtime_param)
            param.get_runtime_param = lambda c=coercion: c  # type: ignore[method-assign,misc]


class _PlainParams:
    """Gives a typer command or group :class:`PlainCoercion` for its plain parameters."""

    params: list[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        convert_plainly(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]  # made on first use
        convert_plainly([option])
        return option


class PlainParamsCommand(_PlainParams, TyperCommand):
    """A typer command whose plain parameters are converted by :class:`PlainCoercion`."""


class PlainParamsGroup(_PlainParams, TyperGroup):
    """The group of commands (``corral``), its own options (``--version``, ``--help``)
    converted by :class:`PlainCoercion`."""
