"""What users write: ``@task``, ``shell(...)``, ``@pipeline``, ``.map`` with ``each``/``fixed``."""

from __future__ import annotations

import functools
import inspect
import itertools
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from corral.codehash import code_hash
from corral.errors import GraphError, UsageError
from corral.graph import (
    ExpandSpec,
    Future,
    Graph,
    MapFuture,
    NodeKind,
    active_graph,
    building,
    dependencies,
    normalize,
    scalars_only,
)
from corral.resources import Resources, ResourcesSpec

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class each:
    """Map over the list that ``future`` will hold at run time (a dynamic scatter):
    ``step.map(item=each(list_items(...)))``.

    ``future`` is typed ``Any`` because a task call is typed as returning the task's value
    (so pipelines type-check as plain Python); it must be the future of a task call."""

    future: Any

    def __post_init__(self) -> None:
        if isinstance(self.future, MapFuture):
            if self.future.gather is None:  # a scatter over a list known now: map over it
                raise GraphError(
                    f"each() of the scatter {self.future.name}: its elements are known while "
                    "the graph is built, so map over it directly: task.map(x=scatter)"
                )
            object.__setattr__(self, "future", self.future.gather)  # the list it will hold
        elif not isinstance(self.future, Future):
            raise GraphError(
                f"each() takes the result of a task call inside a pipeline, not a "
                f"{type(self.future).__name__}; map over a plain list directly: "
                "task.map(x=[...])"
            )


@dataclass(frozen=True)
class fixed:
    """Pass ``value`` whole to every element of a scatter, even if it is a list."""

    value: Any


@dataclass(frozen=True)
class TaskOptions:
    name: str
    resources: ResourcesSpec = None
    retries: int = 0
    cache: bool = True
    version: str = ""
    executor: str | None = None
    """Run this task on another executor profile than the pipeline's (e.g. ``"local"``)."""
    retry_cancelled: bool = False
    """Retry (within ``retries``) an attempt cancelled outside Corral (``scancel``, ``qdel``, a
    preemption script) instead of failing the run."""
    launcher: str | None = None
    """How the ranks of a parallel task start (``srun``, ``mpirun``, ``mpiexec``, ``mpi``,
    ``none``); it travels to the executor in the task's resources."""

    def __post_init__(self) -> None:
        if self.launcher is not None:
            from corral.launchers import with_launcher

            object.__setattr__(self, "resources", with_launcher(self.resources, self.launcher))


class TaskDef(Generic[P, R]):
    """A decorated function. Call it inside a pipeline to get a :class:`Future`."""

    def __init__(self, func: Callable[P, R], options: TaskOptions) -> None:
        self.func = func
        self.opts = options
        functools.update_wrapper(self, func)  # type: ignore[arg-type]
        self._code: str | None = None

    @property
    def name(self) -> str:
        return self.opts.name

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The function's signature (computed once per task definition)."""
        return inspect.signature(self.func)

    @property
    def code(self) -> str:
        """Hash of the function's code (and same-module helpers), plus the task's version."""
        if self._code is None:
            self._code = code_hash(self.func) + (":" + self.opts.version if self.opts.version else "")
        return self._code

    def options(self, **changes: Any) -> TaskDef[P, R]:
        """A copy with other options: ``name``, ``resources``, ``retries``, ``cache``, ``version``."""
        return TaskDef(self.func, replace(self.opts, **changes))

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Outside a pipeline: call the function. Inside: add the call to the graph and return
        its :class:`Future`, typed as the value it stands for, so that a pipeline type-checks
        as plain Python (a wrong argument or a wrong count is a mypy error)."""
        graph = active_graph()
        if graph is None:
            return self.func(*args, **kwargs)
        return cast(R, self.add_call(graph, args, kwargs, graph.unique_name(self.name)))

    def add_call(self, graph: Graph, args: Sequence[Any], kwargs: dict[str, Any], name: str,
                 check: bool = True, group: str | None = None) -> Future:
        """Add a call of this task to ``graph`` as node ``name`` and return its future: what
        calling the task inside a pipeline does, and what the engine does for a dynamic
        scatter's elements and an interactive executor's calls (``check=False``: the
        arguments were checked against the signature already)."""
        if check:
            self._check_signature(args, kwargs, name)
        group = graph.scoped(self.name) if group is None else group
        if scalars_only(args, kwargs):  # a scatter's element, mostly
            node = graph.add(NodeKind.PYTHON, name, task=self, args=tuple(args),
                             kwargs=dict(kwargs), group=group)
            return Future(node)
        args = tuple(normalize(a) for a in args)
        kwargs = {k: normalize(v) for k, v in kwargs.items()}
        node = graph.add(
            NodeKind.PYTHON, name, task=self, args=args, kwargs=kwargs,
            deps=dependencies(args, kwargs), group=group,
        )
        return Future(node)

    def _check_signature(self, args: Sequence[Any], kwargs: dict[str, Any], name: str) -> None:
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise GraphError(f"task {name}: {exc}; fix the call in the pipeline") from None
        except ValueError:
            pass

    def map(
        self, *args: Any, mode: Literal["zip", "product"] = "zip", **kwargs: Any
    ) -> list[R]:
        """Scatter: one call per element of the list arguments.

        Lists, tuples, ranges and scatters are mapped; other values (and ``fixed(x)``) are passed
        whole to every call. Several mapped arguments are zipped (equal lengths required) or
        combined as a product with ``mode="product"``. ``each(future)`` maps over a list a task
        returns at run time.
        """
        # Typed as the list of values it stands for, as a task call is typed as its value: so
        # `total(sq.map(x=xs))` type-checks. In a pipeline it is a MapFuture.
        return cast("list[R]", self._scatter(args, kwargs, mode))

    def _scatter(self, args: tuple[Any, ...], kwargs: dict[str, Any], mode: str
                 ) -> MapFuture | list[Any]:
        graph = active_graph()
        if graph is None:
            return [self.func(*a, **k) for a, k in _expand(self.name, args, kwargs, mode)]
        dynamic = [k for k, v in kwargs.items() if isinstance(v, each)]
        if any(isinstance(a, each) for a in args):
            raise GraphError(f"task {self.name}: pass each(...) as a keyword argument of .map")
        if dynamic:
            return self._map_dynamic(graph, args, kwargs, dynamic)
        base = graph.unique_name(self.name)
        group = graph.scoped(self.name)
        # every call of a scatter passes the same argument names: check the signature once
        elements = [
            self.add_call(graph, a, k, f"{base}[{i}]", check=i == 0, group=group)
            for i, (a, k) in enumerate(_expand(base, args, kwargs, mode))
        ]
        return MapFuture(base, elements, None)

    def _map_dynamic(
        self, graph: Graph, args: Sequence[Any], kwargs: dict[str, Any], dynamic: list[str]
    ) -> MapFuture:
        if len(dynamic) > 1 or args or any(_is_mapped(v) for v in kwargs.values()):
            raise GraphError(
                f"task {self.name}: a dynamic .map maps over exactly one each(...) argument; "
                "wrap other list arguments in fixed(...) or map them in a second step"
            )
        base = graph.unique_name(self.name)
        source = kwargs[dynamic[0]].future
        fixed_kwargs = {k: normalize(_unwrap(v)) for k, v in kwargs.items() if k != dynamic[0]}
        gather = graph.add(NodeKind.GATHER, f"{base}[*]", group=graph.scoped(self.name))
        expander = graph.add(
            NodeKind.EXPAND, f"{base}[expand]", group=graph.scoped(self.name),
            deps=[source.node.idx, *dependencies((), fixed_kwargs)],
            expand=ExpandSpec(self, source, dynamic[0], fixed_kwargs, gather.idx),
        )
        gather.deps = [expander.idx]
        return MapFuture(base, None, Future(gather))


def _is_mapped(value: Any) -> bool:
    return isinstance(value, list | tuple | range | MapFuture)


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, fixed) else value


def _expand(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], mode: str
) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    slots: list[tuple[int | str, list[Any]]] = []
    for i, a in enumerate(args):
        if _is_mapped(a):
            slots.append((i, list(a)))
    for k, v in kwargs.items():
        if _is_mapped(v):
            slots.append((k, list(v)))
    if not slots:
        raise GraphError(
            f"task {name}: .map needs at least one list argument to map over; "
            "call the task directly for a single call"
        )
    if mode == "zip":
        lengths = {len(v) for _, v in slots}
        if len(lengths) > 1:
            detail = ", ".join(f"{k}: {len(v)}" for k, v in slots)
            raise GraphError(
                f"task {name}: .map arguments have different lengths ({detail}); "
                "make them equal or use mode='product'"
            )
        combos: Iterable[tuple[Any, ...]] = zip(*(v for _, v in slots), strict=True)
    elif mode == "product":
        combos = itertools.product(*(v for _, v in slots))
    else:
        raise GraphError(f"task {name}: mode={mode!r} is not 'zip' or 'product'")
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    fixed_args = [_unwrap(x) for x in args]  # the mapped slots are overwritten in each call
    fixed_kwargs = {key: _unwrap(v) for key, v in kwargs.items()}
    for combo in combos:
        a = fixed_args.copy()
        kw = fixed_kwargs.copy()
        for (slot, _), value in zip(slots, combo, strict=True):
            if isinstance(slot, int):
                a[slot] = value
            else:
                kw[slot] = value
        calls.append((tuple(a), kw))
    return calls


@overload
def task(func: Callable[P, R], /) -> TaskDef[P, R]: ...
@overload
def task(
    *, name: str | None = None, resources: ResourcesSpec = None, retries: int = 0,
    cache: bool = True, version: str = "", executor: str | None = None,
    retry_cancelled: bool = False, launcher: str | None = None,
) -> Callable[[Callable[P, R]], TaskDef[P, R]]: ...


def task(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None,
    resources: ResourcesSpec = None, retries: int = 0, cache: bool = True, version: str = "",
    executor: str | None = None, retry_cancelled: bool = False, launcher: str | None = None,
) -> Any:
    """Declare a Python task. ``retries`` extra attempts after a failure; ``resources`` may be
    a :class:`Resources` or a function of the attempt number; ``cache=False`` always reruns;
    ``version`` is mixed into the cache key (bump it to force a rerun); ``retry_cancelled``
    retries a job cancelled outside Corral too (by default that fails the run); ``launcher="mpi"``
    runs the function on every rank of ``resources`` (mpi4py) and returns rank 0's value."""
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"retries={retries!r} must be an integer >= 0")
    if resources is not None and not (isinstance(resources, Resources) or callable(resources)):
        raise UsageError(
            f"resources={resources!r} must be Resources(...) or a function of the attempt number"
        )

    def wrap(f: Callable[..., Any]) -> TaskDef[Any, Any]:
        opts = TaskOptions(name or f.__name__, resources, retries, cache, version, executor,
                           retry_cancelled, launcher)
        return TaskDef(f, opts)

    return wrap(func) if func is not None else wrap


# ---------------------------------------------------------------------------- shell tasks


PathsSpec = str | PurePath | Future | Sequence[Any] | Mapping[str, Any] | None


@dataclass
class ShellSpec:
    """A shell command template with its declared inputs, outputs and parameters."""

    command: str
    inputs: Any
    outputs: Any
    params: dict[str, Any] = field(default_factory=dict)
    opts: TaskOptions = field(default_factory=lambda: TaskOptions("shell"))


def _flat_paths(spec: Any) -> list[Any]:
    if spec is None:
        return []
    if isinstance(spec, str | PurePath | Future):
        return [spec]
    if isinstance(spec, MapFuture):
        return [spec.as_arg()]
    if isinstance(spec, Mapping):
        return [p for v in spec.values() for p in _flat_paths(v)]
    return [p for v in spec for p in _flat_paths(v)]


# A shell task's future is typed as the value it stands for, from the form of ``outputs``
# (see engine.values.shell_value): one path, a dict of paths, a list of paths, or nothing.
@overload
def shell(command: str, *, inputs: PathsSpec = None, outputs: str | PurePath,
          name: str | None = None, params: Mapping[str, Any] | None = None,
          resources: ResourcesSpec = None, retries: int = 0, cache: bool = True,
          executor: str | None = None, retry_cancelled: bool = False,
          launcher: str | None = None) -> Path: ...
@overload
def shell(command: str, *, inputs: PathsSpec = None, outputs: Mapping[str, Any],
          name: str | None = None, params: Mapping[str, Any] | None = None,
          resources: ResourcesSpec = None, retries: int = 0, cache: bool = True,
          executor: str | None = None, retry_cancelled: bool = False,
          launcher: str | None = None) -> dict[str, Path]: ...
@overload
def shell(command: str, *, inputs: PathsSpec = None, outputs: Sequence[Any],
          name: str | None = None, params: Mapping[str, Any] | None = None,
          resources: ResourcesSpec = None, retries: int = 0, cache: bool = True,
          executor: str | None = None, retry_cancelled: bool = False,
          launcher: str | None = None) -> list[Path]: ...
@overload
def shell(command: str, *, inputs: PathsSpec = None, outputs: None = None,
          name: str | None = None, params: Mapping[str, Any] | None = None,
          resources: ResourcesSpec = None, retries: int = 0, cache: bool = True,
          executor: str | None = None, retry_cancelled: bool = False,
          launcher: str | None = None) -> None: ...


def shell(
    command: str, *, inputs: PathsSpec = None, outputs: PathsSpec = None, name: str | None = None,
    params: Mapping[str, Any] | None = None, resources: ResourcesSpec = None, retries: int = 0,
    cache: bool = True, executor: str | None = None, retry_cancelled: bool = False,
    launcher: str | None = None,
) -> Any:
    """A shell-command task. ``{input}``, ``{output}`` and ``{params.x}`` in ``command`` are
    replaced (quoted for the shell) when the task runs; ``{input.name}`` / ``{output.name}``
    when inputs or outputs are dicts. Returns a :class:`Future` whose value is the output
    path(s) as declared, and is typed so: ``Path`` for one output, ``dict[str, Path]``,
    ``list[Path]``, or ``None`` without outputs. ``launcher="mpi"`` (or ``srun``, ``mpirun``,
    ``mpiexec``) starts the command on every rank of ``resources``."""
    graph = active_graph()
    if graph is None:
        raise UsageError("shell(...) creates a task: call it inside a @pipeline function")
    if not isinstance(command, str) or not command.strip():
        raise UsageError("shell(...) needs a non-empty command string")
    label = name or command.split()[0].split("/")[-1]
    label = "".join(c if c.isalnum() or c in "_-." else "_" for c in label) or "shell"
    opts = TaskOptions(label, resources, retries, cache, "", executor, retry_cancelled, launcher)
    check_command_fields(label, command, params or {})
    inputs = normalize(inputs)
    spec = ShellSpec(command, inputs, outputs, dict(params or {}), opts)
    outs = [str(p) for p in _flat_paths(outputs)]
    if any(isinstance(p, Future) for p in _flat_paths(outputs)):
        raise GraphError(f"shell task {label}: outputs must be paths, not futures")
    in_paths = [str(p) for p in _flat_paths(inputs) if not isinstance(p, Future | list)]
    deps = dependencies((inputs, list(spec.params.values())), {})
    node = graph.add(
        NodeKind.SHELL, graph.unique_name(label), shell=spec, deps=deps, outputs=outs,
        inputs=in_paths, group=graph.scoped(label),
    )
    return Future(node)


COMMAND_FIELDS = ("input", "inputs", "output", "outputs", "params")
"""The brace fields a shell command may use; any other brace is an error before the run."""


def check_command_fields(label: str, command: str, params: Mapping[str, Any]) -> None:
    """A GraphError, before anything runs, for a brace field of ``command`` that the task
    cannot fill (``{s}``, ``{params.x}`` without a parameter ``x``, a lone ``{``)."""
    literal = "write {{ and }} for literal braces"
    try:
        parsed = list(string.Formatter().parse(command))
    except ValueError as exc:
        raise GraphError(f"shell task {label}: the command's braces are malformed ({exc}); {literal}") from None
    for _text, ref, _spec, _conv in parsed:
        if ref is None:
            continue
        root, _, rest = ref.partition(".")
        root = root.partition("[")[0]
        if root not in COMMAND_FIELDS:
            raise GraphError(
                f"shell task {label}: the command has the field {{{ref}}}, which Corral cannot fill "
                f"(it fills {{input}}, {{output}} and {{params.NAME}}); {literal}"
            )
        name = rest.partition(".")[0].partition("[")[0]
        if root == "params" and name and name not in params:
            raise GraphError(
                f"shell task {label}: the command uses {{params.{name}}} but params has no {name!r} "
                f"(it has: {', '.join(map(str, params)) or 'nothing'}); add it to params= or {literal}"
            )


# ---------------------------------------------------------------------------- pipelines


class Pipeline(Generic[P, R]):
    """A decorated pipeline function. Inside another pipeline, calling it nests its tasks under
    its name; at top level, :func:`corral.run` runs it."""

    def __init__(self, func: Callable[P, R], name: str | None = None) -> None:
        self.func = func
        self.name = name or func.__name__
        self.source_file: str | None = None
        """The file the pipeline was loaded from by :func:`corral.load_pipeline`."""
        self.imports: frozenset[str] = frozenset()
        """Installed packages (numpy, pandas ...) its file imported: local workers import them
        ahead of the first task."""
        functools.update_wrapper(self, func)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        graph = active_graph()
        if graph is None:
            raise UsageError(
                f"pipeline {self.name} builds a graph; run it with corral.run({self.name}, ...) "
                f"or `corral run FILE {self.name}`"
            )
        graph.push_scope(self.name)
        try:
            return self.func(*args, **kwargs)
        finally:
            graph.pop_scope()

    def build(self, params: Mapping[str, Any]) -> Graph:
        """Call the pipeline function with ``params`` and return the graph it made."""
        graph = Graph()
        func: Callable[..., Any] = self.func
        with building(graph):
            graph.result = normalize(func(**params))
        return graph


@overload
def pipeline(func: Callable[P, R], /) -> Pipeline[P, R]: ...
@overload
def pipeline(func: None = None, /, *, name: str | None = None
             ) -> Callable[[Callable[P, R]], Pipeline[P, R]]: ...


def pipeline(func: Callable[P, R] | None = None, /, *, name: str | None = None) -> Any:
    """Declare a pipeline: a function that calls tasks and returns futures (``@pipeline`` or
    ``@pipeline(name="...")``). Typed as the function, so calls to it and its parameters are
    checked like any call."""
    if func is None:
        return lambda f: Pipeline(f, name)
    return Pipeline(func, name)
