"""Bad input is refused before any task runs: no run, no attempt, no side effect."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import corral
from corral import pipeline, shell, task
from corral.errors import (
    GraphError,
    HashingError,
    ParameterError,
    SerializationError,
    UsageError,
)

from .corehelp import Helper


@task
def side_effect(name: str) -> str:
    Path(name).write_text("ran")
    return name


@task
def use(value: Any) -> str:
    return repr(value)


class Opaque:
    """A custom class without a registered hasher."""

    def __init__(self, v: int) -> None:
        self.v = v


def _refused(helper: Helper, pipe: corral.Pipeline[Any, Any], error: type[Exception], pattern: str,
             params: dict[str, Any] | None = None) -> str:
    with pytest.raises(error, match=pattern) as info:
        helper.run(pipe, params)
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, UsageError)
    assert not (helper.workdir / "side.txt").exists(), "a task ran"
    assert helper.store.list_runs() == [], "a run row was created"
    assert helper.attempts() == []
    return message


def test_cycle_through_shell_files(helper: Helper) -> None:
    @pipeline
    def cyclic() -> None:
        side_effect("side.txt")
        shell("cp {input} {output}", inputs="b.txt", outputs="a.txt", name="make_a")
        shell("cp {input} {output}", inputs="a.txt", outputs="b.txt", name="make_b")

    msg = _refused(helper, cyclic, GraphError, "cycle through tasks")
    assert "make_a" in msg and "make_b" in msg


def test_missing_input_file(helper: Helper) -> None:
    @pipeline
    def missing() -> Path:
        side_effect("side.txt")
        return shell("wc -l {input} > {output}", inputs="nope.txt", outputs="n.txt", name="wc")

    _refused(helper, missing, GraphError, r"task wc: input file 'nope.txt' does not exist")


def test_output_declared_by_two_tasks(helper: Helper) -> None:
    @pipeline
    def clash() -> None:
        side_effect("side.txt")
        shell("echo 1 > {output}", outputs="same.txt", name="one")
        shell("echo 2 > {output}", outputs="./same.txt", name="two")

    _refused(helper, clash, GraphError, r"declared by both task one and task two")


@pytest.mark.parametrize("make", [threading.Lock, lambda: socket.socket()],
                         ids=["lock", "socket"])
def test_unpicklable_argument(helper: Helper, make: Any) -> None:
    value = make()
    try:
        @pipeline
        def unpicklable() -> str:
            side_effect("side.txt")
            return use({"handle": value})

        msg = _refused(helper, unpicklable, SerializationError, r"task use: an argument of type")
        assert "cannot be pickled" in msg
    finally:
        if isinstance(value, socket.socket):
            value.close()


def test_unhashable_argument(helper: Helper) -> None:
    @pipeline
    def unhashable() -> str:
        side_effect("side.txt")
        return use([Opaque(1)])

    msg = _refused(helper, unhashable, HashingError, r"task use: a value of type Opaque")
    assert "corral.hashing.register(Opaque" in msg


def test_registered_hasher_makes_a_class_usable(helper: Helper) -> None:
    from corral.hashing import register

    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

        def __repr__(self) -> str:
            return f"Point({self.x})"

    register(Point, lambda p: str(p.x).encode())

    @pipeline
    def registered() -> str:
        return use(Point(3))

    r = helper.run(registered)
    assert r.ok and r.value == "Point(3)"


def test_unknown_parameter_and_wrong_type(helper: Helper) -> None:
    @pipeline
    def params(n: int = 1) -> str:
        side_effect("side.txt")
        return use(n)

    _refused(helper, params, ParameterError, r"has no parameter --m; its parameters are --n",
             {"m": 1})
    _refused(helper, params, ParameterError, r"--n expects int, got 'x'", {"n": "x"})
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(UsageError, match=r"\(-j/--jobs\) must be a whole number >= 1"):
            helper.run(params, jobs=jobs)
    assert helper.store.list_runs() == [] and not (helper.workdir / "side.txt").exists()


def test_duplicate_task_name_and_future_as_output(helper: Helper) -> None:
    @pipeline
    def future_output() -> object:
        a = use(1)
        return shell("echo > {output}", outputs=a, name="bad")

    _refused(helper, future_output, GraphError, "outputs must be paths")

    @pipeline
    def bad_call() -> object:
        return use(1, 2)  # type: ignore[call-arg]  # what this test is about

    _refused(helper, bad_call, GraphError, r"task use: too many positional arguments")


def test_plan_computes_keys_without_running(helper: Helper) -> None:
    @pipeline
    def planned(n: int = 2) -> list[str]:
        return use.map(value=list(range(n)))

    p = corral.plan(planned, {"n": 3}, helper.workdir)
    keys = [n.key for n in p.graph.nodes]
    assert len(set(keys)) == 3 and all(len(k) == 32 for k in keys)
    assert helper.attempts() == [] and helper.store.list_runs() == []
    assert [n.key for n in corral.plan(planned, {"n": 3}, helper.workdir).graph.nodes] == keys


def test_scalar_calls_take_the_fast_path_to_the_same_keys(helper: Helper) -> None:
    """A call whose arguments are all scalars skips the planner's looks inside them and keys
    from a per-task copy of a hasher fed with the code: its key is the one the full path gives,
    and calls with a path, a list or a future (the full path) are keyed as before."""
    from corral.engine.plan import node_key
    from corral.graph import NodeKind

    @pipeline
    def mixed(n: int = 2) -> str:
        firsts = use.map(value=list(range(n)))
        use(value=Path("data.txt"))
        use(value=[1, 2])
        use.map(value=["a", None, 1.5, True, b"x"])
        return use(value=firsts[0])

    p = corral.plan(mixed, {"n": 3}, helper.workdir)
    python = [n for n in p.graph.nodes if n.kind is NodeKind.PYTHON]
    assert len(python) == 11
    assert [n.key for n in python] == [node_key(n, p.inputs.get(n.idx, {})) for n in python]
    assert len({n.key for n in python}) == 11
