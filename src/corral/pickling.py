"""Pickling task functions and arguments for workers, keeping their source file names.

cloudpickle pickles a function defined in the pipeline file (or in any module registered with
``register_pickle_by_value``) by value: its code object travels, not a reference. Since
cloudpickle 3.1.3 it sets ``co_filename`` of every such code object to ``"<dynamic-code>"``, so
a task's traceback no longer names the user's file and shows no source lines. Corral does not
depend on what a cloudpickle release does with that field: :class:`Pickler` sends code objects
with :mod:`marshal`, which keeps every field (file name, first line, line table, nested code
objects) as compiled. Unpickling needs nothing but the standard library, and the worker must run
the same Python minor version as the engine, as cloudpickle already requires.
"""

from __future__ import annotations

import io
import marshal
import pickle
import types
from collections import ChainMap
from typing import Any

import cloudpickle


def _reduce_code(code: types.CodeType) -> tuple[Any, tuple[bytes]]:
    return marshal.loads, (marshal.dumps(code),)


class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle's pickler, with code objects sent whole (see the module's docstring)."""

    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


SCALARS = frozenset({int, float, str, bytes, bool, type(None), complex})
"""Types of values with nothing inside them: no references, no buffers (exact types)."""
_PLAIN_MAX = 1000
"""Most items :func:`plain` looks at before it gives up (and cloudpickle does the work)."""


def plain(value: Any) -> bool:
    """Whether ``value`` is plain data the standard pickler writes exactly as cloudpickle
    would: numbers, strings, bytes, None, and tuples, lists and dicts of them (exact types:
    a subclass, say an enum or numpy.float64, may be pickled by reference to a module the
    worker does not have). Gives up (False) after :data:`_PLAIN_MAX` items."""
    todo, seen = [value], 0
    while todo:
        v = todo.pop()
        seen += 1
        if seen > _PLAIN_MAX:
            return False
        kind = type(v)
        if kind in SCALARS:
            continue
        if kind is tuple or kind is list:
            todo.extend(v)
        elif kind is dict:
            todo.extend(v.keys())
            todo.extend(v.values())
        else:
            return False
    return True


def dumps(value: Any) -> bytes:
    """``cloudpickle.dumps(value)`` at the highest protocol, keeping code objects' file names.
    Plain data (:func:`plain`: a task's numbers and strings, most return values) is written by
    the standard pickler, which gives the same bytes (cloudpickle changes how functions,
    classes and code are written, not plain data) in a tenth of the time."""
    if plain(value):
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    with io.BytesIO() as buffer:
        Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        return buffer.getvalue()
