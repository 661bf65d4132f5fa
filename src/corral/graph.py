"""The task graph: nodes made by calling tasks inside a pipeline, and the futures that stand
for their results.

Calling a task inside a pipeline adds a :class:`Node` to the active :class:`Graph` and returns a
:class:`Future`. Futures found in a node's arguments (also inside lists, tuples and dicts) are its
dependencies; shell tasks also depend on the tasks that declare their input files as outputs.
A :class:`MapFuture` is the list of results of a scatter; when it maps over a list that a task
returns at run time (``each(future)``) its elements are added to the graph when that list exists.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.errors import GraphError

if TYPE_CHECKING:
    from corral.model import ShellSpec, TaskDef


class NodeKind(enum.StrEnum):
    PYTHON = "python"
    SHELL = "shell"
    GATHER = "gather"
    """Collects the results of a dynamic scatter into a list (runs in the engine)."""
    EXPAND = "expand"
    """Placeholder that expands a dynamic ``.map`` once the list it maps over exists."""


class Future:
    """The result of a task call, available once the task has run."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    @property
    def name(self) -> str:
        return self.node.name

    def __repr__(self) -> str:
        return f"<Future {self.node.name}>"

    def __bool__(self) -> bool:
        raise GraphError(
            f"the result of {self.node.name} is not known while the graph is built; "
            "pass it to another task instead of testing it in the pipeline function"
        )

    def __iter__(self) -> Iterator[Any]:
        raise GraphError(
            f"cannot iterate over the result of {self.node.name} while the graph is built; "
            f"map over it at run time with task.map(x=each(future))"
        )


class MapFuture:
    """The list of results of a scatter.

    A static scatter (over lists known while the graph is built) can be indexed, iterated and
    measured; its elements are futures. A dynamic scatter (``each(future)``) only has a gather
    future, whose value is the list of results. Passing either to a task gathers it.
    """

    __slots__ = ("elements", "gather", "name")

    def __init__(self, name: str, elements: list[Future] | None, gather: Future | None) -> None:
        self.name = name
        self.elements = elements
        self.gather = gather

    def _static(self) -> list[Future]:
        if self.elements is None:
            raise GraphError(
                f"the length of {self.name} is only known at run time (it maps over a "
                "task's result); pass the whole scatter to a task to gather it"
            )
        return self.elements

    def __len__(self) -> int:
        return len(self._static())

    def __getitem__(self, index: int) -> Future:
        return self._static()[index]

    def __iter__(self) -> Iterator[Future]:
        return iter(self._static())

    def __repr__(self) -> str:
        n = "?" if self.elements is None else len(self.elements)
        return f"<MapFuture {self.name} [{n}]>"

    def as_arg(self) -> list[Future] | Future:
        """What a task receives: the list of element futures, or the gather future."""
        if self.elements is not None:
            return list(self.elements)
        assert self.gather is not None
        return self.gather


SCALAR_TYPES = frozenset({int, float, str, bytes, bool, type(None)})
"""Argument types (exact) that hold no future, scatter or path and always pickle: a call whose
arguments are all of these skips the graph's and the planner's looks inside its arguments."""


def scalars_only(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether every argument of a call is of :data:`SCALAR_TYPES`."""
    return all(type(a) in SCALAR_TYPES for a in args) and all(
        type(v) in SCALAR_TYPES for v in kwargs.values())


def normalize(value: Any) -> Any:
    """Replace scatters inside ``value`` by what tasks receive (see :meth:`MapFuture.as_arg`)."""
    if isinstance(value, MapFuture):
        return value.as_arg()
    if isinstance(value, list):
        return [normalize(v) for v in value] if any(_needs(v) for v in value) else value
    if isinstance(value, tuple):
        return tuple(normalize(v) for v in value) if any(_needs(v) for v in value) else value
    if isinstance(value, dict):
        if any(_needs(v) for v in value.values()):
            return {k: normalize(v) for k, v in value.items()}
    return value


def _needs(value: Any) -> bool:
    return isinstance(value, MapFuture | list | tuple | dict)


@dataclass(eq=False, slots=True)
class Node:
    """One task call in the graph."""

    idx: int
    name: str
    kind: NodeKind
    task: TaskDef[Any, Any] | None = None
    shell: ShellSpec | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    deps: list[int] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    """Declared input paths that are plain strings (not futures)."""
    expand: ExpandSpec | None = None
    members: list[int] | None = None
    """For GATHER nodes: the nodes whose results form the list (set at expansion)."""
    key: str = ""
    group: str = ""


@dataclass
class ExpandSpec:
    """What a dynamic scatter maps: the task, the broadcast and the per-element arguments."""

    task: TaskDef[Any, Any]
    source: Future
    """The future whose value is the runtime list mapped over."""
    arg_name: str
    fixed_kwargs: dict[str, Any]
    gather: int
    """Index of the GATHER node that collects the elements."""


class Graph:
    """The nodes of one pipeline invocation, in creation order (a topological order for
    future-based edges; file-based edges are checked by :func:`corral.validate.check`)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.names: dict[str, int] = {}
        self._scope: list[str] = []
        self._counters: dict[str, int] = {}
        self.result: Any = None

    def __len__(self) -> int:
        return len(self.nodes)

    def unique_name(self, base: str) -> str:
        prefix = ".".join(self._scope)
        full = f"{prefix}.{base}" if prefix else base
        n = self._counters.get(full, 0)
        self._counters[full] = n + 1
        return full if n == 0 else f"{full}~{n}"

    def add(self, node_kind: NodeKind, name: str, **fields: Any) -> Node:
        node = Node(len(self.nodes), name, node_kind, **fields)
        if name in self.names:
            raise GraphError(
                f"two tasks are both named {name!r}; give one another name with "
                ".options(name=...)"
            )
        self.names[name] = node.idx
        self.nodes.append(node)
        return node

    def push_scope(self, name: str) -> None:
        self._scope.append(name)

    def pop_scope(self) -> None:
        self._scope.pop()

    def scoped(self, name: str) -> str:
        prefix = ".".join(self._scope)
        return f"{prefix}.{name}" if prefix else name


_ACTIVE: contextvars.ContextVar[Graph | None] = contextvars.ContextVar("corral_graph", default=None)


def active_graph() -> Graph | None:
    """The graph being built by the enclosing pipeline, if any."""
    return _ACTIVE.get()


class building:
    """Context manager making ``graph`` the active graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._token: contextvars.Token[Graph | None] | None = None

    def __enter__(self) -> Graph:
        self._token = _ACTIVE.set(self.graph)
        return self.graph

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _ACTIVE.reset(self._token)


def collect_futures(value: Any, out: list[Future]) -> None:
    """Append every Future inside ``value`` (lists, tuples, dicts, sets) to ``out``."""
    if isinstance(value, Future):
        out.append(value)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            collect_futures(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            collect_futures(v, out)


def dependencies(args: Sequence[Any], kwargs: dict[str, Any]) -> list[int]:
    """Indices of the nodes whose futures appear in the arguments (deduplicated, ordered)."""
    found: list[Future] = []
    for a in args:
        collect_futures(a, found)
    for v in kwargs.values():
        collect_futures(v, found)
    seen: dict[int, None] = {}
    for f in found:
        seen.setdefault(f.node.idx, None)
    return list(seen)
