"""The code part of task keys (corral.codehash): tasks that reach nothing new keep the digests
of Corral before classes and module values were followed, the depth limit is the documented
one, and what a task reaches is named for ``corral why``."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import types
from pathlib import Path

from corral.codehash import MAX_REACH, code_hash, code_parts

PINNED = textwrap.dedent('''
    import json
    import math
    import os

    from corral import task


    def inner(x):
        return x + len(os.sep)


    def outer(x):
        return inner(x) * 2


    @task
    def plain(x: int) -> int:
        return x + 1


    @task(retries=2, version="3")
    def with_helpers(x: int, n: int = 2) -> int:
        """Two levels of same-module helpers, standard-library modules, a literal default."""
        return outer(x) + int(math.sqrt(n)) + len(json.dumps([x]))
''')


def _load(tmp_path: Path, name: str, source: str) -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_tasks_reaching_nothing_new_keep_their_digests(tmp_path: Path) -> None:
    # recorded with Corral before issue 17: these tasks' results stay cached after the upgrade
    m = _load(tmp_path, "reach_pinned", PINNED)
    assert m.plain.code == "cc39c3828bb3ccee5f0ca8350558f1a7"
    assert m.with_helpers.code == "5741b89877644d2b1c35dd056cade066:3"


def _chain(levels: int, edited: int) -> str:
    """A task calling ``h1``, which calls ``h2`` ... up to ``h<levels>``; ``h<edited>`` edited."""
    lines = ["from corral import task", ""]
    for i in range(1, levels + 1):
        call = f"h{i + 1}(x)" if i < levels else "x"
        lines += [f"def h{i}(x):", f"    return {call} + {7 if i == edited else 1}", ""]
    lines += ["@task", "def t(x: int) -> int:", "    return h1(x)", ""]
    return "\n".join(lines)


def test_helpers_are_followed_four_steps_deep(tmp_path: Path) -> None:
    levels = MAX_REACH + 1
    base = code_hash(_load(tmp_path, "reach_chain", _chain(levels, 0)).t.func)
    edited = {i: code_hash(_load(tmp_path, f"reach_chain{i}", _chain(levels, i)).t.func)
              for i in range(1, levels + 1)}
    assert MAX_REACH == 4
    assert all(edited[i] != base for i in range(1, MAX_REACH + 1))
    assert edited[MAX_REACH + 1] == base  # the documented limit


def test_what_a_task_reaches_is_named(tmp_path: Path) -> None:
    m = _load(tmp_path, "reach_named", textwrap.dedent('''
        from corral import task

        class Base:
            pass

        class Model(Base):
            def predict(self, x):
                return x * SCALE

        SCALE = 3
        UNRELATED = 4

        @task
        def t(x: int) -> int:
            return Model().predict(x)
    '''))
    parts = code_parts(m.t.func)
    assert set(parts) == {"function t", "class Model", "class Base", "value SCALE"}
    assert all(len(d) == 16 for d in parts.values())


def test_a_name_it_cannot_tell_about_changes_the_key_every_time(tmp_path: Path) -> None:
    source = "from corral import task\n\n@task\ndef t() -> int:\n    return MISSING\n"
    first = _load(tmp_path, "reach_unknown", source).t.func
    again = _load(tmp_path, "reach_unknown2", source).t.func
    assert "unknown MISSING" in code_parts(first)
    assert code_hash(first) != code_hash(again)
