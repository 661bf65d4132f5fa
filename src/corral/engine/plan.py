"""Planning: validate a built graph and compute every task's cache key, before anything runs.

A key is a Merkle hash of the task's code, its arguments (futures contribute their producer's
key), the content of its raw input files and the keys of the tasks producing its file inputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import cloudpickle

from corral.errors import GraphError, HashingError, SerializationError
from corral.graph import Future, Graph, Node, NodeKind, scalars_only
from corral.hashing import (
    _Unhashable,
    feed_into,
    file_digest,
    hash_value,
    new_hasher,
    register_feeder,
)


def _feed_future(value: Future, h: Any) -> None:
    if not value.node.key:
        raise _Unhashable(value)
    h.update(b"F" + value.node.key.encode())


register_feeder(Future, _feed_future)


@dataclass
class Plan:
    graph: Graph
    cwd: Path
    children: list[list[int]]
    inputs: dict[int, dict[str, str]]
    """Raw input files of each node with their content digests."""

    def add_node_children(self, node: Node) -> None:
        while len(self.children) <= node.idx:
            self.children.append([])
        for d in node.deps:
            self.children[d].append(node.idx)


def _abs(cwd: Path, p: str) -> str:
    return os.path.normpath(os.path.join(cwd, p))


def link_files(graph: Graph, cwd: Path) -> None:
    """Check declared files and add edges from the producer of each shell input."""
    producers: dict[str, Node] = {}
    for node in graph.nodes:
        for out in node.outputs:
            path = _abs(cwd, out)
            other = producers.get(path)
            if other is not None:
                raise GraphError(
                    f"output {out!r} is declared by both task {other.name} and task {node.name}; "
                    "give each task its own output path"
                )
            producers[path] = node
    for node in graph.nodes:
        for inp in node.inputs:
            path = _abs(cwd, inp)
            producer = producers.get(path)
            if producer is not None:
                if producer.idx not in node.deps:
                    node.deps.append(producer.idx)
            elif not os.path.exists(path):
                raise GraphError(
                    f"task {node.name}: input file {inp!r} does not exist and no task produces "
                    "it; create it or fix the path"
                )


def topological_order(graph: Graph) -> tuple[list[int], list[list[int]]]:
    """Kahn's algorithm; a cycle raises a GraphError naming the tasks on it."""
    n = len(graph.nodes)
    children: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for node in graph.nodes:
        indeg[node.idx] = len(node.deps)
        for d in node.deps:
            children[d].append(node.idx)
    ready = [i for i in range(n) if indeg[i] == 0]
    order: list[int] = []
    while ready:
        i = ready.pop()
        order.append(i)
        for c in children[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                ready.append(c)
    if len(order) != n:
        stuck = [graph.nodes[i].name for i in range(n) if indeg[i] > 0]
        raise GraphError(
            f"the pipeline has a cycle through tasks {', '.join(stuck[:5])}; "
            "a task cannot consume (directly or through files) what it produces"
        )
    return order, children


_SIMPLE = (int, float, str, bytes, bool, type(None), PurePath, complex, range)


def check_picklable(value: Any, where: str, seen: set[int]) -> None:
    """Fail early, naming the task, for arguments that cannot be sent to a worker."""
    if isinstance(value, (*_SIMPLE, Future)):
        return
    if isinstance(value, list | tuple | set | frozenset):
        for v in value:
            check_picklable(v, where, seen)
        return
    if isinstance(value, dict):
        for v in value.values():
            check_picklable(v, where, seen)
        return
    if id(value) in seen:
        return
    seen.add(id(value))
    try:
        cloudpickle.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"{where}: an argument of type {type(value).__name__} cannot be pickled ({exc}); "
            "pass plain data or paths instead (open files and connections inside the task)"
        ) from None


def raw_inputs(node: Node, cwd: Path, producers: set[str]) -> dict[str, str]:
    """Existing input files of a node (declared, or Path arguments) with their digests."""
    found: dict[str, str] = {}
    paths: list[str] = list(node.inputs)
    if node.kind is NodeKind.PYTHON:
        _paths_in(node.args, paths)
        _paths_in(node.kwargs, paths)
    for p in paths:
        full = _abs(cwd, p)
        if full not in producers and os.path.exists(full):
            found[p] = file_digest(full)
    return found


def _paths_in(value: Any, out: list[str]) -> None:
    if isinstance(value, PurePath):
        out.append(str(value))
    elif isinstance(value, list | tuple):
        for v in value:
            _paths_in(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _paths_in(v, out)


def node_key(node: Node, inputs: dict[str, str], start: Any = None) -> str:
    """The cache key of a node whose dependencies already have keys. ``start``: a hasher
    already fed with a Python node's kind and code (see :func:`key_nodes`), copied."""
    if start is not None and node.kind is NodeKind.PYTHON:
        h = start.copy()
    else:
        h = new_hasher()
        h.update(node.kind.value.encode())
        if node.kind is NodeKind.PYTHON:
            assert node.task is not None
            h.update(node.task.code.encode())
    try:
        if node.kind is NodeKind.PYTHON:
            feed_into(h, node.args)
            feed_into(h, node.kwargs)
        elif node.kind is NodeKind.SHELL:
            assert node.shell is not None
            spec = node.shell
            feed_into(h, spec.command)
            feed_into(h, spec.params)
            feed_into(h, _keyable(spec.inputs))
            feed_into(h, _keyable(spec.outputs))
        elif node.kind is NodeKind.EXPAND:
            assert node.expand is not None
            h.update(node.expand.task.code.encode())
            h.update(node.expand.arg_name.encode())
            feed_into(h, node.expand.source)
            feed_into(h, node.expand.fixed_kwargs)
        else:
            for d in node.deps:
                h.update(b"G" + d.to_bytes(8, "little"))
        for path, digest in sorted(inputs.items()):
            h.update(b"I" + path.encode() + b"=" + digest.encode())
    except _Unhashable as exc:
        hash_value(exc.value, f"task {node.name}")  # raises a HashingError naming the type
        raise HashingError(f"task {node.name}: an argument cannot be hashed") from None
    return str(h.hexdigest())


def _keyable(value: Any) -> Any:
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple):
        return [_keyable(v) for v in value]
    if isinstance(value, dict):
        return {k: _keyable(v) for k, v in value.items()}
    return value


def key_nodes(plan: Plan, nodes: Iterable[Node], producers: set[str]) -> None:
    """Compute keys of ``nodes`` (given in dependency order) and check their arguments."""
    graph = plan.graph
    seen: set[int] = set()
    starts: dict[str, Any] = {}  # per task code: a hasher fed with the kind and the code
    for node in nodes:
        if node.kind is NodeKind.GATHER:
            deps_keys = "".join(graph.nodes[d].key for d in node.deps)
            node.key = hash_value(("gather", deps_keys))
            continue
        start = None
        if node.kind is NodeKind.PYTHON:
            assert node.task is not None
            start = starts.get(node.task.code)
            if start is None:
                start = starts[node.task.code] = new_hasher()
                start.update(NodeKind.PYTHON.value.encode() + node.task.code.encode())
        if node.kind is NodeKind.PYTHON and not node.inputs and scalars_only(node.args, node.kwargs):
            inputs: dict[str, str] = {}  # (a scatter's elements, mostly)
        else:
            check_picklable(node.args, f"task {node.name}", seen)
            check_picklable(node.kwargs, f"task {node.name}", seen)
            inputs = raw_inputs(node, plan.cwd, producers)
        if inputs:
            plan.inputs[node.idx] = inputs
        node.key = node_key(node, inputs, start)


def make_plan(graph: Graph, cwd: Path) -> Plan:
    """Validate the graph and compute all keys. Raises UsageError subclasses on bad input."""
    link_files(graph, cwd)
    order, children = topological_order(graph)
    producers = {_abs(cwd, o) for n in graph.nodes for o in n.outputs}
    plan = Plan(graph, cwd, children, {})
    key_nodes(plan, (graph.nodes[i] for i in order), producers)
    return plan
