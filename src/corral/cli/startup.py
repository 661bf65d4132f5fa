"""The cyclic garbage collector during the command line's start-up.

Starting ``corral run`` imports typer, rich, SQLAlchemy and the engine and builds the store's
engine: hundreds of thousands of objects that live as long as the process, and hardly any
garbage cycles. The collector scanned them again and again as they came (on a fully cached
20-task run about 50 ms of collections: 135 young, 12 middle and one full one). :func:`pause`
turns it off when the command starts; :func:`over` moves everything made so far out of its sight
(:func:`gc.freeze`: never scanned again, as it would never be freed) and turns it back on.
``corral run`` calls :func:`over` when its engine is ready, every other command when it is
invoked; only a pause of :func:`pause` is ended, so a program that runs the command line in
its own process (tests, ``CliRunner``) keeps its collector as it was.
"""

from __future__ import annotations

import gc

_paused: list[bool] = []


def pause() -> None:
    """Turn the collector off for the start-up (if it is on)."""
    if gc.isenabled():
        gc.disable()
        _paused.append(True)


def over() -> None:
    """The start-up is over: freeze what it made and turn the collector back on (if
    :func:`pause` turned it off)."""
    if _paused:
        _paused.clear()
        gc.freeze()
        gc.enable()
