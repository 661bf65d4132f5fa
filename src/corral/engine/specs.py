"""Building executor payloads from graph nodes."""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path, PurePath
from typing import Any

from corral.errors import SerializationError
from corral.executors.base import Outcome, TaskKind, TaskSpec
from corral.graph import Future, Node, NodeKind
from corral.hashing import digest_bytes
from corral.model import TaskDef, TaskOptions
from corral.pickling import dumps
from corral.resources import Resources, resolve_resources
from corral.worker.execute import PythonPayload, ShellPayload

from .values import _flatten, format_command, substitute

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(name: str, limit: int = 60) -> str:
    return _SAFE.sub("_", name)[:limit] or "task"


class PayloadBuilder:
    """Pickles task calls for executors; each task function is pickled once."""

    def __init__(self) -> None:
        self._funcs: dict[int, tuple[str, bytes]] = {}

    def function(self, task: TaskDef[Any, Any]) -> tuple[str, bytes]:
        cached = self._funcs.get(id(task))
        if cached is None:
            data = dumps(task.func)
            cached = (digest_bytes(data), data)
            self._funcs[id(task)] = cached
        return cached

    def payload(self, node: Node, load: Callable[[Future], Any]) -> tuple[TaskKind, bytes]:
        if node.kind is NodeKind.PYTHON:
            assert node.task is not None
            digest, func = self.function(node.task)
            if node.deps:
                args, kwargs = substitute(node.args, load), substitute(node.kwargs, load)
            else:  # (no future among the arguments: nothing to replace)
                args, kwargs = node.args, node.kwargs
            try:
                packed = dumps((args, kwargs))
            except Exception as exc:
                raise SerializationError(
                    f"task {node.name}: its arguments cannot be pickled ({exc})"
                ) from None
            return TaskKind.PYTHON, pickle.dumps(
                PythonPayload(digest, func, packed), protocol=pickle.HIGHEST_PROTOCOL
            )
        assert node.shell is not None
        spec = node.shell
        inputs = substitute(spec.inputs, load)
        params = substitute(spec.params, load)
        command = format_command(spec, inputs, params)
        outputs = [str(o) for o in _flatten(spec.outputs)]
        return TaskKind.SHELL, pickle.dumps(ShellPayload(command, outputs))


def _opts(node: Node) -> TaskOptions | None:
    """The options of the task or shell command a node calls (none for engine nodes)."""
    if node.task is not None:
        return node.task.opts
    return node.shell.opts if node.shell is not None else None


def node_resources(node: Node, attempt: int) -> Resources:
    opts = _opts(node)
    return resolve_resources(opts.resources if opts else None, attempt)


def node_retries(node: Node) -> int:
    opts = _opts(node)
    return opts.retries if opts else 0


def may_retry(outcome: Outcome, attempt: int, retries: int, retry_cancelled: bool = False) -> bool:
    """The retry rule of attached and detached runs alike: a retryable outcome (failure,
    timeout, out of memory, lost node; a cancellation from outside Corral only with the task's
    ``retry_cancelled``) while ``attempt <= retries``, where ``attempt`` counts only the
    attempts that really ran."""
    wanted = outcome.retryable or (retry_cancelled and outcome is Outcome.CANCELLED)
    return wanted and attempt <= retries


def node_retry_cancelled(node: Node) -> bool:
    opts = _opts(node)
    return opts.retry_cancelled if opts else False


def node_cacheable(node: Node) -> bool:
    opts = _opts(node)
    return opts.cache if opts else True


def attempt_dir(work_root: Path, node: Node, attempt: int) -> Path:
    """``<work_root>/<idx>-<name>.<attempt>``: one level, so starting an attempt costs one mkdir."""
    return work_root / f"{node.idx}-{safe_name(node.name)}.{attempt}"


def make_spec(
    node: Node, run_id: str, attempt: int, work_root: Path, cwd: Path,
    kind: TaskKind, payload: bytes, resources: Resources,
    real_attempt: int | None = None, inputs: bool = True, env: dict[str, str] | None = None,
) -> TaskSpec:
    """The spec of attempt ``attempt`` of ``node``. ``real_attempt`` is the number the task
    sees (attempts withdrawn by a pause do not count; default ``attempt``); ``inputs=False``
    leaves :attr:`TaskSpec.inputs` empty, for executors that do not stage files; ``env``: its
    :func:`attempt_env`, when the caller has it already (one dict shared by many specs)."""
    attempt_id = f"{run_id}.{node.idx}.{attempt}"
    workdir = attempt_dir(work_root, node, attempt)
    return TaskSpec(
        attempt_id=attempt_id, run_id=run_id, task_key=node.key, name=node.name,
        group=node.group, kind=kind, payload=payload, resources=resources, attempt=attempt,
        workdir=workdir, cwd=cwd, env=env or attempt_env(real_attempt or attempt, resources),
        inputs=input_files(node) if inputs else [],
    )


def input_files(node: Node) -> list[str]:
    """The files a task reads, for executors that copy them to another machine: a shell task's
    declared ``inputs`` (and the output paths of the shell tasks whose futures it gets there), a
    Python task's ``Path`` arguments (also inside lists, tuples and dicts, and the paths a shell
    task's future holds). As written in the pipeline: relative to the pipeline directory, or
    absolute. Paths a Python task returns are only known at run time and are not listed."""
    found: list[str] = []
    if node.kind is NodeKind.SHELL and node.shell is not None:
        _files_in(node.shell.inputs, found, strings=True)
    elif node.kind is NodeKind.PYTHON:
        _files_in(node.args, found, strings=False)
        _files_in(node.kwargs, found, strings=False)
    return list(dict.fromkeys(found))


def _files_in(value: Any, out: list[str], strings: bool) -> None:
    if isinstance(value, Future):
        if value.node.kind is NodeKind.SHELL:  # its value is its output path(s)
            out.extend(value.node.outputs)
    elif isinstance(value, PurePath) or (strings and isinstance(value, str)):
        out.append(str(value))
    elif isinstance(value, list | tuple):
        for v in value:
            _files_in(v, out, strings)
    elif isinstance(value, dict):
        for v in value.values():
            _files_in(v, out, strings)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
"""Thread-count variables of the common numeric libraries, set to the task's cores."""


def attempt_env(attempt: int, resources: Resources) -> dict[str, str]:
    """Variables a task sees while it runs: its attempt number and what it was granted
    (``CORRAL_ATTEMPT``, ``CORRAL_CORES``, ``CORRAL_GPUS``, and ``CORRAL_MEMORY`` in bytes /
    ``CORRAL_WALLTIME`` in seconds when requested), and the thread counts of OpenMP, OpenBLAS,
    MKL, Accelerate and numexpr set to its cores, so that a 1-core task does not start a
    thread per CPU of the node."""
    cores = str(resources.cores)
    env = {"CORRAL_ATTEMPT": str(attempt), "CORRAL_CORES": cores,
           "CORRAL_GPUS": str(resources.gpus), **dict.fromkeys(THREAD_VARIABLES, cores)}
    if resources.memory_bytes is not None:
        env["CORRAL_MEMORY"] = str(resources.memory_bytes)
    if resources.walltime_seconds is not None:
        env["CORRAL_WALLTIME"] = str(resources.walltime_seconds)
    return env


def short_params(node: Node) -> dict[str, Any]:
    """A JSON-friendly summary of a node's arguments, for `corral why` and reports."""
    if node.kind is NodeKind.SHELL and node.shell is not None:
        return {"command": node.shell.command, **{k: _short(v) for k, v in node.shell.params.items()}}
    out: dict[str, Any] = {}
    names = _positional_names(node)
    for i, a in enumerate(node.args):
        out[names[i] if i < len(names) else f"arg{i}"] = _short(a)
    for k, v in node.kwargs.items():
        out[k] = _short(v)
    return out


def _positional_names(node: Node) -> list[str]:
    """Parameter names of the task function, so positional arguments are recorded by name."""
    if node.task is None:
        return []
    try:
        return list(node.task.signature.parameters)
    except (TypeError, ValueError):
        return []


def _short(value: Any, depth: int = 0) -> Any:
    if isinstance(value, Future):
        return f"<{value.node.name}>"
    if isinstance(value, bool | int | float | type(None)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:197] + "..."
    if isinstance(value, list | tuple):
        if depth > 1 or len(value) > 20:
            return f"<{type(value).__name__} of {len(value)}>"
        return [_short(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if depth > 1 or len(value) > 20:
            return f"<dict of {len(value)}>"
        return {str(k): _short(v, depth + 1) for k, v in value.items()}
    text = repr(value)
    return text if len(text) <= 200 else f"<{type(value).__name__}>"
