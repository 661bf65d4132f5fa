"""Caching: what reruns after which change, and what is reused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import corral

from .corehelp import Helper

PIPE = '''
from pathlib import Path
from corral import task, pipeline, shell

def helper_scale(v):
    return v * {scale}

@task
def first(n: int) -> int:
    return n + 1

@task
def second(v: int) -> int:
    return helper_scale(v) + {offset}

@task
def third(v: int) -> int:
    return v * 10

@task
def lonely(k: int) -> int:
    return k - 1

@task
def count(p: Path) -> int:
    return len(Path(p).read_text().split())

@pipeline
def chain(n: int = 1, k: int = 5):
    c = third(second(first(n)))
    words = count(Path("words.txt"))
    up = shell("tr a-z A-Z < {{input}} > {{output}}", inputs="words.txt", outputs="upper.txt",
               name="upper")
    return c, lonely(k), words, up

@pipeline
def other(n: int = 1):
    return first(n)
'''

ALL = ["count", "first", "lonely", "second", "third", "upper"]


def source(scale: int = 2, offset: int = 0) -> str:
    return PIPE.format(scale=scale, offset=offset)


@pytest.fixture
def cached(helper: Helper) -> Helper:
    (helper.workdir / "words.txt").write_text("a b c\n")
    return helper


def test_second_run_is_fully_cached(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    r1 = cached.run(pipe)
    assert r1.ok, r1.errors
    assert r1.value == (40, 4, 3, Path("upper.txt"))
    assert cached.ran(r1.run_id) == ALL
    r2 = cached.run(pipe)
    assert r2.ok and r2.value == r1.value
    assert cached.attempts(r2.run_id) == []
    assert set(cached.states(r2.run_id).values()) == {"cached"}
    assert all(t["cached"] for t in cached.tasks(r2.run_id).values())


def test_code_change_reruns_that_task_and_downstream(cached: Helper) -> None:
    r1 = cached.run(cached.load(source(), "chain"))
    assert r1.ok
    # the same pipeline from another file whose `second` has another body
    r2 = cached.run(cached.load(source(offset=1), "chain"))
    assert r2.ok and r2.value[0] == 50
    assert cached.ran(r2.run_id) == ["second", "third"]
    # editing a same-module helper the task calls is a code change of the task
    r3 = cached.run(cached.load(source(scale=3, offset=1), "chain"))
    assert r3.value[0] == 70
    assert cached.ran(r3.run_id) == ["second", "third"]
    # formatting and comments do not matter
    reformatted = source(scale=3, offset=1).replace(
        "return v * 10", "# a comment\n    return (v *\n            10)")
    r4 = cached.run(cached.load(reformatted, "chain"))
    assert r4.ok and cached.ran(r4.run_id) == []


def test_code_change_in_place_after_clearing_the_module(cached: Helper) -> None:
    path = cached.write(source(), "inplace.py")
    r1 = cached.run(corral.load_pipeline(path, "chain"))
    assert r1.ok
    path.write_text(source().replace("return n + 1", "return n + 2  # changed"))
    for name in [m for m in sys.modules if m.startswith("corral_pipeline_inplace_")]:
        del sys.modules[name]
    r2 = cached.run(corral.load_pipeline(path, "chain"))
    assert r2.ok and r2.value[0] == 60
    assert cached.ran(r2.run_id) == ["first", "second", "third"]


def test_parameter_change_reruns_only_affected_tasks(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    assert cached.run(pipe, {"n": 1, "k": 5}).ok
    r = cached.run(pipe, {"n": 1, "k": 6})
    assert r.value[1] == 5
    assert cached.ran(r.run_id) == ["lonely"]
    r = cached.run(pipe, {"n": 2, "k": 6})
    assert cached.ran(r.run_id) == ["first", "second", "third"]


def test_input_file_change_reruns_only_its_consumers(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    assert cached.run(pipe).ok
    (cached.workdir / "words.txt").write_text("a b c d e\n")
    r = cached.run(pipe)
    assert r.value[2] == 5
    assert cached.ran(r.run_id) == ["count", "upper"]
    assert (cached.workdir / "upper.txt").read_text() == "A B C D E\n"


def test_force_reruns_the_task_and_downstream(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    assert cached.run(pipe).ok
    r = cached.run(pipe, force=["second"])
    assert cached.ran(r.run_id) == ["second", "third"]
    r = cached.run(pipe, force=["upp*"])
    assert cached.ran(r.run_id) == ["upper"]
    with pytest.raises(corral.CorralError, match="matches no task"):
        cached.run(pipe, force=["nonesuch"])


def test_no_cache_reruns_everything(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    assert cached.run(pipe).ok
    r = cached.run(pipe, no_cache=True)
    assert r.ok and cached.ran(r.run_id) == ALL


def test_result_of_another_pipeline_is_reused(cached: Helper) -> None:
    path = cached.write(source(), "shared.py")
    r1 = cached.run(corral.load_pipeline(path, "other"), {"n": 1})
    assert r1.ok and r1.value == 2
    r2 = cached.run(corral.load_pipeline(path, "chain"), {"n": 1})
    assert r2.ok
    assert "first" not in cached.ran(r2.run_id)
    assert cached.states(r2.run_id)["first"] == "cached"


def test_deleted_output_is_restored_from_the_cas(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    assert cached.run(pipe).ok
    out = cached.workdir / "upper.txt"
    out.unlink()
    r = cached.run(pipe)
    assert r.ok and cached.ran(r.run_id) == []
    assert out.read_text() == "A B C\n"


def test_output_modified_by_hand_makes_the_task_rerun(cached: Helper) -> None:
    pipe = cached.load(source(), "chain")
    assert cached.run(pipe).ok
    out = cached.workdir / "upper.txt"
    out.write_text("edited by hand\n")
    r = cached.run(pipe)
    assert r.ok and cached.ran(r.run_id) == ["upper"]
    assert out.read_text() == "A B C\n"


def test_cache_false_and_version(cached: Helper) -> None:
    text = '''
        from corral import task, pipeline
        @task(cache=False)
        def always() -> int:
            return 1
        @task(version="{v}")
        def versioned() -> int:
            return 2
        @pipeline
        def opts():
            return always(), versioned()
    '''
    assert cached.run(cached.load(text.format(v="1"))).ok
    r = cached.run(cached.load(text.format(v="1")))
    assert cached.ran(r.run_id) == ["always"]
    r = cached.run(cached.load(text.format(v="2")))
    assert cached.ran(r.run_id) == ["always", "versioned"]
