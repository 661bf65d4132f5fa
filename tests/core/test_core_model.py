"""Tasks, shell tasks, scatter/gather, nested pipelines, dynamic map, fixed."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral
from corral import each, fixed, pipeline, shell, task
from corral.errors import GraphError, UsageError

from .corehelp import Helper


@task
def sq(x: int) -> int:
    return x * x


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def listing(n: int) -> list[int]:
    return list(range(n))


@task
def length(xs: list[int], x: int) -> tuple[int, int]:
    return (len(xs), x)


@pipeline
def sums(n: int = 10) -> tuple[int, int, Path]:
    a = total(sq.map(x=range(n)))
    b = total(sq.map(x=each(listing(n))))
    s = shell("echo {params.v} > {output}", outputs="out.txt", params={"v": a})
    return a, b, s


def test_brief_example_runs(helper: Helper) -> None:
    r = helper.run(sums, {"n": 10})
    assert r.ok, r.errors
    a, b, s = r.value
    assert a == b == sum(i * i for i in range(10))
    assert s == Path("out.txt")
    assert (helper.workdir / "out.txt").read_text().strip() == "285"
    states = helper.states(r.run_id)
    assert states["total"] == states["total~1"] == states["echo"] == "succeeded"
    assert {f"sq~1[{i}]" for i in range(10)} <= set(states), "dynamic elements are recorded"
    # sq~1[i] has the same key as sq[i]: whichever finished first is reused by the other
    assert all(st in ("succeeded", "cached") for st in states.values()), states
    # a second run is entirely cached, including the dynamic scatter's bookkeeping rows
    r2 = helper.run(sums, {"n": 10})
    assert r2.ok and r2.value == (285, 285, Path("out.txt"))
    assert helper.attempts(r2.run_id) == []
    assert set(helper.states(r2.run_id).values()) == {"cached"}, helper.states(r2.run_id)


def test_python_task_called_outside_pipeline_is_plain_call() -> None:
    assert sq(4) == 16
    mapped: list[int] = sq.map(x=[1, 2])  # a plain list here (in a pipeline, a MapFuture)
    assert mapped == [1, 4]


def test_scatter_zip_product_and_mismatch(wd: Path) -> None:
    @pipeline
    def zipped() -> list[int]:
        return add.map(x=[1, 2, 3], y=[10, 20, 30])

    @pipeline
    def product() -> list[int]:
        return add.map(x=[1, 2], y=[10, 20, 30], mode="product")

    @pipeline
    def mismatched() -> list[int]:
        return add.map(x=[1, 2], y=[10, 20, 30])

    @pipeline
    def nothing_to_map() -> list[int]:
        return add.map(x=1, y=2)

    zp = corral.plan(zipped, {}, wd)
    assert [n.name for n in zp.graph.nodes] == ["add[0]", "add[1]", "add[2]"]
    assert [(n.kwargs["x"], n.kwargs["y"]) for n in zp.graph.nodes] == [(1, 10), (2, 20), (3, 30)]
    pp = corral.plan(product, {}, wd)
    assert len(pp.graph.nodes) == 6
    assert {(n.kwargs["x"], n.kwargs["y"]) for n in pp.graph.nodes} == {
        (x, y) for x in (1, 2) for y in (10, 20, 30)}
    with pytest.raises(GraphError, match=r"different lengths \(x: 2, y: 3\).*mode='product'"):
        corral.plan(mismatched, {}, wd)
    with pytest.raises(GraphError, match="at least one list argument"):
        corral.plan(nothing_to_map, {}, wd)


def test_scatter_gather_and_fixed_run(helper: Helper) -> None:
    @pipeline
    def scatter() -> tuple[int, list[tuple[int, int]], int]:
        squares = sq.map(x=[1, 2, 3])
        pairs = length.map(xs=fixed([7, 8, 9, 10]), x=[5, 6])
        return total(squares), pairs, squares[1]

    r = helper.run(scatter)
    assert r.ok, r.errors
    tot, pairs, second = r.value
    assert tot == 14
    assert pairs == [(4, 5), (4, 6)], "fixed(list) is passed whole to every element"
    assert second == 4


def test_nested_pipelines_scope_task_names(helper: Helper) -> None:
    @pipeline
    def inner(k: int) -> int:
        return sq(k)

    @pipeline
    def outer() -> tuple[int, int]:
        return add(inner(2), inner(3)), sq(5)

    the_plan = corral.plan(outer, {}, helper.workdir)
    names = [n.name for n in the_plan.graph.nodes]
    assert names == ["inner.sq", "inner.sq~1", "add", "sq"]
    assert [n.group for n in the_plan.graph.nodes] == ["inner.sq", "inner.sq", "add", "sq"]
    r = helper.run(outer)
    assert r.value == (13, 25)
    assert set(helper.states(r.run_id)) == set(names)


def test_dynamic_map_over_runtime_list(helper: Helper) -> None:
    @pipeline
    def dyn(n: int = 4) -> tuple[int, list[int]]:
        squares = sq.map(x=each(listing(n)))
        return total(squares), add.map(y=each(listing(3)), x=100)

    r = helper.run(dyn, {"n": 4})
    assert r.ok, r.errors
    assert r.value == (14, [100, 101, 102])

    @pipeline
    def twice(n: int = 3) -> list[int]:  # each() of a dynamic scatter: the list it gathers
        return sq.map(x=each(sq.map(x=each(listing(n)))))

    r2 = helper.run(twice)
    assert r2.ok, r2.errors
    assert r2.value == [0, 1, 16]
    # an empty runtime list gives an empty gather
    r0 = helper.run(dyn, {"n": 0})
    assert r0.ok, r0.errors
    assert r0.value[0] == 0


def test_dynamic_map_misuse_is_a_graph_error(wd: Path) -> None:
    @pipeline
    def two_each() -> list[int]:
        xs = listing(3)
        return add.map(x=each(xs), y=each(xs))

    @pipeline
    def positional_each() -> list[int]:
        return sq.map(each(listing(3)))

    @pipeline
    def branch_on_future() -> int:
        if listing(3):
            return 1
        return 0

    with pytest.raises(GraphError, match="exactly one each"):
        corral.plan(two_each, {}, wd)
    with pytest.raises(GraphError, match="keyword argument"):
        corral.plan(positional_each, {}, wd)
    with pytest.raises(GraphError, match="not known while the graph is built"):
        corral.plan(branch_on_future, {}, wd)
    with pytest.raises(GraphError, match=r"each\(\) takes the result of a task call.*not a list"):
        each([1, 2, 3])

    @pipeline
    def each_of_static() -> list[int]:
        return sq.map(x=each(sq.map(x=[1, 2])))

    with pytest.raises(GraphError, match=r"each\(\) of the scatter sq.*map over it directly"):
        corral.plan(each_of_static, {}, wd)


def test_shell_tasks_with_declared_inputs_and_outputs(helper: Helper) -> None:
    (helper.workdir / "in.txt").write_text("b\na\nc\n")

    @task
    def count_lines(p: Path) -> int:
        return len(Path(p).read_text().splitlines())

    @pipeline
    def sh() -> tuple[int, dict[str, Path]]:
        srt = shell("sort {input} > {output}", inputs="in.txt", outputs="sorted.txt", name="sort")
        both = shell("cat {input.a} {input.b} > {output}",
                     inputs={"a": srt, "b": "in.txt"}, outputs="both.txt", name="cat")
        # a file edge: consumes sorted.txt by path, not by future
        up = shell("tr a-z A-Z < {input} > {output.up}", inputs="sorted.txt",
                   outputs={"up": "upper.txt"}, name="upper")
        return count_lines(both), up

    the_plan = corral.plan(sh, {}, helper.workdir)
    nodes = {n.name: n for n in the_plan.graph.nodes}
    assert nodes["sort"].idx in nodes["upper"].deps, "file inputs link to their producer"
    r = helper.run(sh)
    assert r.ok, r.errors
    n, up = r.value
    assert n == 6
    assert up == {"up": Path("upper.txt")}
    assert (helper.workdir / "sorted.txt").read_text() == "a\nb\nc\n"
    assert (helper.workdir / "upper.txt").read_text() == "A\nB\nC\n"


def test_shell_command_values_are_quoted(helper: Helper) -> None:
    @pipeline
    def quoting() -> Path:
        return shell("printf '%s' {params.text} > {output}", outputs="q.txt",
                     params={"text": "it's $HOME; rm -rf /"}, name="quote")

    r = helper.run(quoting)
    assert r.ok, r.errors
    assert (helper.workdir / "q.txt").read_text() == "it's $HOME; rm -rf /"


def test_shell_task_missing_declared_output_fails(helper: Helper) -> None:
    @pipeline
    def lazy() -> Path:
        return shell("true", outputs="never.txt", name="lazy")

    r = helper.run(lazy)
    assert r.state.value == "failed"
    assert "did not create declared output" in r.errors[0]


def test_python_tasks_run_in_the_working_directory(helper: Helper, tmp_path: Path) -> None:
    """Relative paths in Python tasks are relative to the run's working directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    @task
    def write_here(name: str) -> Path:
        import os

        Path(name).write_text(os.getcwd())
        return Path(name)

    @pipeline
    def writes() -> Path:
        return write_here("made.txt")

    workdir = helper.workdir
    os_cwd = Path.cwd()
    import os

    os.chdir(elsewhere)
    try:
        r = helper.run(writes, workdir=workdir)
    finally:
        os.chdir(os_cwd)
    assert r.ok, r.errors
    assert (workdir / "made.txt").read_text() == str(workdir)
    assert not (elsewhere / "made.txt").exists()


def test_shell_outside_pipeline_and_bad_options() -> None:
    with pytest.raises(UsageError, match="inside a @pipeline"):
        shell("echo hi")
    with pytest.raises(UsageError, match="retries"):
        task(retries=-1)
    with pytest.raises(UsageError, match="builds a graph"):
        sums()
