"""What runs again after an edit: the table of docs/concepts.md ("Caching and keys"), each row
checked with the real CLI. A pipeline with one task per kind of reference runs, one edit is
made, it runs again: exactly the tasks of the row rerun (the others are cached), the values are
those of the edited code, and ``corral why`` names what changed."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .clihelp import corral, invoke, invoke_json

PIPE = textwrap.dedent('''
    import dataclasses
    import functools
    import json
    import pathlib

    from corral import pipeline, task
    from helpers import OFFSET, Scaler, twice


    def load_config():
        return json.loads((pathlib.Path(__file__).parent / "config.json").read_text())


    CONFIG = load_config()
    FACTOR = 3
    DEFAULT_K = 5
    TABLE = {"a": 1}
    PRIMES = [2, 3, 5]
    PAIR = (4, 5)


    @dataclasses.dataclass(frozen=True)
    class Settings:
        bins: int


    SETTINGS = Settings(bins=8)


    class Greeter:
        def __init__(self, greeting):
            self.greeting = greeting


    GREETER = Greeter("hi")


    class Base:
        def unit(self):
            return 1


    class Model(Base):
        def predict(self, x):
            return x * 10 + self.unit()


    class Unrelated:
        def f(self):
            return 0


    def leaf(x):
        return x + 1


    def helper(x):
        return leaf(x) * 2


    def doubled(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            return 2 * f(*args, **kwargs)
        return wrapper


    def make(scale):
        @task
        def scaled(x: int) -> int:
            return x * scale
        return scaled


    scaled = make(2)


    @task
    def body(x: int) -> int:
        return x + 1  # a comment


    @task
    def use_helper(x: int) -> int:
        return helper(x)


    @task
    def use_class(x: int) -> int:
        return Model().predict(x)


    @task
    def use_const(x: int) -> int:
        return x * FACTOR


    @task
    def use_dict(k: str) -> int:
        return TABLE[k]


    @task
    def use_list() -> int:
        return sum(PRIMES)


    @task
    def use_tuple() -> int:
        return PAIR[0] * PAIR[1]


    @task
    def use_dataclass() -> int:
        return SETTINGS.bins


    @task
    def use_object() -> str:
        return GREETER.greeting


    @task
    def use_config() -> int:
        return CONFIG["n"]


    @task
    def use_default(x: int, k: int = DEFAULT_K) -> int:
        return x * k


    @task
    @doubled
    def decorated(x: int) -> int:
        return x


    @task
    def use_local_class(x: int) -> int:
        return Scaler(2).apply(x)


    @task
    def use_local_const(x: int) -> int:
        return x + OFFSET


    @task
    def use_local_function(x: int) -> int:
        return twice(x)


    @pipeline
    def p():
        return {
            "body": body(1), "use_helper": use_helper(1), "use_class": use_class(1),
            "use_const": use_const(1), "use_dict": use_dict("a"), "use_list": use_list(),
            "use_tuple": use_tuple(), "use_dataclass": use_dataclass(),
            "use_object": use_object(), "use_config": use_config(),
            "use_default": use_default(1), "scaled": scaled(1), "decorated": decorated(1),
            "use_local_class": use_local_class(1), "use_local_const": use_local_const(1),
            "use_local_function": use_local_function(1),
        }
''')

HELPERS = textwrap.dedent('''
    OFFSET = 100


    class Scaler:
        def __init__(self, k):
            self.k = k

        def apply(self, x):
            return x * self.k


    def twice(x):
        return 2 * x
''')

FILES = {"p.py": PIPE, "helpers.py": HELPERS, "config.json": '{"n": 1}'}

VALUES: dict[str, Any] = {
    "body": 2, "use_helper": 4, "use_class": 11, "use_const": 3, "use_dict": 1, "use_list": 10,
    "use_tuple": 20, "use_dataclass": 8, "use_object": "hi", "use_config": 1, "use_default": 5,
    "scaled": 2, "decorated": 2, "use_local_class": 2, "use_local_const": 101,
    "use_local_function": 2,
}


@dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str


@dataclass(frozen=True)
class Case:
    edits: list[Edit]
    reruns: dict[str, Any] = field(default_factory=dict)
    """The tasks that run again, with their new values."""
    why: str = ""
    """What ``corral why`` says about the first of them."""


CASES: dict[str, Case] = {
    "task body": Case([Edit("p.py", "return x + 1  # a comment", "return x + 2")],
                      {"body": 3}, "function body changed"),
    "same-module helper": Case([Edit("p.py", "return leaf(x) * 2", "return leaf(x) * 3")],
                               {"use_helper": 6}, "function helper changed"),
    "helper of a helper": Case([Edit("p.py", "return x + 1\n", "return x + 5\n")],
                               {"use_helper": 12}, "function leaf changed"),
    "class method": Case([Edit("p.py", "return x * 10 + self.unit()", "return x * 20 + self.unit()")],
                         {"use_class": 21}, "class Model changed"),
    "base class": Case([Edit("p.py", "def unit(self):\n        return 1", "def unit(self):\n        return 7")],
                       {"use_class": 17}, "class Base changed"),
    "module constant": Case([Edit("p.py", "FACTOR = 3", "FACTOR = 4")], {"use_const": 4},
                            "module value FACTOR changed"),
    "module dict": Case([Edit("p.py", 'TABLE = {"a": 1}', 'TABLE = {"a": 2}')], {"use_dict": 2},
                        "module value TABLE changed"),
    "module list": Case([Edit("p.py", "PRIMES = [2, 3, 5]", "PRIMES = [2, 3, 7]")],
                        {"use_list": 12}, "module value PRIMES changed"),
    "module tuple": Case([Edit("p.py", "PAIR = (4, 5)", "PAIR = (4, 6)")], {"use_tuple": 24},
                         "module value PAIR changed"),
    "dataclass instance": Case([Edit("p.py", "Settings(bins=8)", "Settings(bins=9)")],
                               {"use_dataclass": 9}, "module value SETTINGS changed"),
    "object Corral cannot hash (by its statement)": Case(
        [Edit("p.py", 'Greeter("hi")', 'Greeter("ho")')], {"use_object": "ho"},
        "module value GREETER changed"),
    "value computed at import": Case([Edit("config.json", '{"n": 1}', '{"n": 2}')],
                                     {"use_config": 2}, "module value CONFIG changed"),
    "default argument": Case([Edit("p.py", "DEFAULT_K = 5", "DEFAULT_K = 6")],
                             {"use_default": 6}, "module value DEFAULT_K changed"),
    "closure variable": Case([Edit("p.py", "scaled = make(2)", "scaled = make(3)")],
                             {"scaled": 3}, "closure variable scale of make.<locals>.scaled"),
    "decorator": Case([Edit("p.py", "return 2 * f(", "return 3 * f(")], {"decorated": 3},
                      "function doubled changed"),
    "local module class": Case(
        [Edit("helpers.py", "return x * self.k", "return x * self.k + 1")],
        {"use_local_class": 3, "use_local_function": 2}, "class helpers.Scaler changed"),
    "local module constant": Case(
        [Edit("helpers.py", "OFFSET = 100", "OFFSET = 200")],
        {"use_local_const": 201, "use_local_function": 2}, "module value OFFSET changed"),
    "local module function (the whole file)": Case(
        [Edit("helpers.py", "return 2 * x", "return 3 * x")], {"use_local_function": 3},
        "function helpers.twice changed"),
    "unrelated edit in the same file": Case([
        Edit("p.py", "def f(self):\n        return 0", "def f(self):\n        return 1"),
        Edit("p.py", "class Unrelated:", "def new_function():\n    return 1\n\n\nclass Unrelated:"),
    ]),
    "comments and formatting": Case([
        Edit("p.py", "return x + 1  # a comment", "return (x+1)   # another comment"),
        Edit("p.py", 'TABLE = {"a": 1}', '# the table\nTABLE = {\n    "a": 1,\n}'),
        Edit("p.py", "return leaf(x) * 2", "return leaf( x )*2  # twice"),
        Edit("p.py", "def predict(self, x):", "# predicts\n    def predict(self, x):  # noqa"),
    ]),
}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).write_text(text)


def _run(root: Path) -> tuple[Any, dict[str, str]]:
    """``corral run p.py`` as a real process: the value, and each task's state (read in
    process, which is quicker)."""
    done = corral("run", "p.py", "--json", "-q", cwd=root)
    assert done.returncode == 0, done.stderr
    status = invoke_json("status", "latest", "-C", root)
    return json.loads(done.stdout)["result"], {t["name"]: t["state"] for t in status["tasks"]}


def _why(root: Path, task: str) -> str:
    return " ".join(invoke("why", "latest", task, "-C", root).stdout.split())  # unwrapped


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_what_runs_again(case: Case, tmp_path: Path) -> None:
    _write(tmp_path, FILES)
    value, states = _run(tmp_path)
    assert value == VALUES and set(states.values()) == {"succeeded"}
    files = dict(FILES)
    for edit in case.edits:
        assert files[edit.file].count(edit.old) == 1, edit.old
        files[edit.file] = files[edit.file].replace(edit.old, edit.new)
    _write(tmp_path, files)
    value, states = _run(tmp_path)
    ran = {name for name, state in states.items() if state != "cached"}
    assert ran == set(case.reruns), states
    assert value == {**VALUES, **case.reruns}
    if case.why:
        why = _why(tmp_path, next(iter(case.reruns)))
        assert f"ran because {case.why}" in why, why


REPRODUCER = textwrap.dedent('''
    from corral import pipeline, task

    class Model:
        def predict(self, x):
            return x * 10

    TABLE = {"a": 1}
    FACTOR = 3

    @task
    def use_class(v: int) -> int:
        return Model().predict(v)

    @task
    def use_table(k: str) -> int:
        return TABLE[k] * FACTOR

    @pipeline
    def p():
        return [use_class(1), use_table("a")]
''')


def test_the_reproducer_of_issue_17(tmp_path: Path) -> None:
    _write(tmp_path, {"p.py": REPRODUCER})
    assert _run(tmp_path) == ([10, 3], {"use_class": "succeeded", "use_table": "succeeded"})
    _write(tmp_path, {"p.py": REPRODUCER.replace("x * 10", "x * 20")})
    assert _run(tmp_path) == ([20, 3], {"use_class": "succeeded", "use_table": "cached"})
    _write(tmp_path, {"p.py": REPRODUCER.replace("x * 10", "x * 20").replace("= 3", "= 10")})
    assert _run(tmp_path) == ([20, 10], {"use_class": "cached", "use_table": "succeeded"})
    assert "use_table ran because module value FACTOR changed" in _why(tmp_path, "use_table")


UNKNOWN = textwrap.dedent('''
    import types
    from corral import pipeline, task

    # no statement binds SPACE, and Corral cannot hash a namespace by value
    globals()["SPACE"] = types.SimpleNamespace(flag=False)

    @task
    def use_space() -> bool:
        return SPACE.flag

    @task
    def plain() -> int:
        return 1

    @pipeline
    def p():
        return [use_space(), plain()]
''')


def test_a_name_corral_cannot_tell_about_reruns_every_time(tmp_path: Path) -> None:
    _write(tmp_path, {"p.py": UNKNOWN})
    assert _run(tmp_path) == ([False, 1], {"use_space": "succeeded", "plain": "succeeded"})
    assert _run(tmp_path) == ([False, 1], {"use_space": "succeeded", "plain": "cached"})
    why = _why(tmp_path, "use_space")
    assert "Corral cannot tell what SPACE is" in why and "runs every time" in why, why


def test_an_edit_in_the_same_second_runs_the_new_code(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline file edited within the second of its last run, to the same size, runs its
    new code. (Python's bytecode cache trusts a .pyc whose source has the same size and
    modification second: the file's old code ran while its cache key had changed. The edit's
    modification time is set back to the first one's, as an edit in the same second has it.)"""
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)  # the runs may write .pyc
    _write(tmp_path, FILES)
    value, _ = _run(tmp_path)
    assert value["decorated"] == 2
    pipeline = tmp_path / "p.py"
    before = pipeline.stat()
    pipeline.write_text(FILES["p.py"].replace("return 2 * f(", "return 3 * f("))
    assert pipeline.stat().st_size == before.st_size
    os.utime(pipeline, ns=(before.st_atime_ns, before.st_mtime_ns))
    value, states = _run(tmp_path)
    assert states["decorated"] == "succeeded" and value["decorated"] == 3
    assert not (tmp_path / "__pycache__").exists() or not list(
        (tmp_path / "__pycache__").glob("p.*.pyc"))
