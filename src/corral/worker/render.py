"""Shell commands rendered on the node, when the job starts (detached mode and exported scripts).

A shell task fed by a Python task's value cannot have its command written at submission: the
value does not exist yet. Detached mode writes a :class:`DeferredShell` payload instead, whose
inputs and parameters hold :class:`~corral.worker.execute.ResultRef` objects naming the upstream
results, and a pickled function (the engine's own command formatting) that turns them into the
command line. :func:`prepare_attempt` runs before the worker starts the attempt: it loads the
upstream results, renders the command, keeps the deferred payload as ``deferred.pkl`` (a retry
renders again from it) and replaces ``payload.pkl`` by the rendered :class:`ShellPayload`.

An array element whose upstream element must have succeeded first (Grid Engine's
``-hold_jid_ad`` releases it when that element *ended*) lists the upstream attempt
directories in ``requires.txt`` of its attempt directory; :func:`prepare_attempt` checks their
exit markers, as the job script does for a whole job.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.worker.execute import (
    MARKER_FILE,
    PAYLOAD_FILE,
    ResultRef,
    ShellPayload,
    atomic_write,
    read_marker,
    resolve_refs,
)

DEFERRED_FILE = "deferred.pkl"
"""The deferred payload of an attempt whose ``payload.pkl`` was rendered on the node."""
REQUIRES_FILE = "requires.txt"
"""Attempt directories (one a line) whose exit markers must say ``succeeded`` first."""


@dataclass
class DeferredShell:
    """A shell task whose command needs upstream values known only when its job starts."""

    render: bytes
    """Pickled callable ``(inputs, params) -> command line`` (values substituted, quoted)."""
    inputs: Any
    """The task's inputs, upstream values as :class:`ResultRef`."""
    params: dict[str, Any]
    """The task's parameters, upstream values as :class:`ResultRef`."""
    outputs: list[str] = field(default_factory=list)
    """Declared output paths (as in :class:`ShellPayload`)."""


def has_refs(value: Any) -> bool:
    """Whether ``value`` holds a :class:`ResultRef` (in lists, tuples, dicts)."""
    if isinstance(value, ResultRef):
        return True
    if isinstance(value, list | tuple):
        return any(has_refs(v) for v in value)
    if isinstance(value, dict):
        return any(has_refs(v) for v in value.values())
    return False


def render_shell(payload: DeferredShell) -> ShellPayload:
    """The shell payload of ``payload`` with the upstream results loaded."""
    render: Callable[[Any, dict[str, Any]], str] = pickle.loads(payload.render)
    command = render(resolve_refs(payload.inputs), resolve_refs(payload.params))
    return ShellPayload(command, list(payload.outputs))


def prepare_attempt(attempt_dir: Path) -> int | None:
    """Check the attempt's required upstream markers and render a deferred shell command.

    Returns ``None`` when the worker should run the attempt, or the exit status to end with:
    1 when an upstream attempt did not succeed (nothing written but a line on stderr, as the
    job script's own check) or when the command cannot be rendered (then with an exit marker
    saying why, so the task fails with that error)."""
    bad = unmet_requirement(attempt_dir)
    if bad is not None:
        sys.stderr.write(f"corral: not running this task; this upstream attempt did not "
                         f"succeed: {bad}/{MARKER_FILE}\n")
        return 1
    deferred = attempt_dir / DEFERRED_FILE
    source = deferred if deferred.is_file() else attempt_dir / PAYLOAD_FILE
    with open(source, "rb") as fh:  # a Python payload may be large: read its start only
        if DeferredShell.__name__.encode() not in fh.read(256):  # the class is named first
            return None
    data = source.read_bytes()
    payload = pickle.loads(data)
    if not isinstance(payload, DeferredShell):
        return None
    if source != deferred:
        atomic_write(deferred, data)
    try:
        shell = render_shell(payload)
    except Exception as exc:  # an upstream result unreadable, a template not matching it
        error = (f"the command of this shell task could not be rendered from its upstream "
                 f"values: {type(exc).__name__}: {exc}")
        sys.stderr.write(f"corral: {error}\n")
        marker = {"outcome": "failed", "metrics": {"ended": time.time()}, "error": error}
        atomic_write(attempt_dir / MARKER_FILE, json.dumps(marker).encode())
        return 1
    atomic_write(attempt_dir / PAYLOAD_FILE, pickle.dumps(shell))
    return None


def unmet_requirement(attempt_dir: Path) -> str | None:
    """The first attempt directory of ``requires.txt`` whose marker does not say
    ``succeeded`` (``None``: all did, or there is no such file)."""
    try:
        lines = (attempt_dir / REQUIRES_FILE).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if not line.strip():
            continue
        marker = read_marker(Path(line))
        if marker is None or marker.get("outcome") != "succeeded":
            return line
    return None
