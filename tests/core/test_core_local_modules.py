"""Editing a module beside the pipeline file reruns the tasks that use it, and only those."""

from __future__ import annotations

import sys
from pathlib import Path

import corral

PIPE = """
import helpers
from helpers import scale
from corral import task, pipeline

@task
def uses_module(x: int) -> int:
    return helpers.offset(x)

@task
def uses_function(x: int) -> int:
    return scale(x)

@task
def uses_nothing(x: int) -> int:
    return x

@pipeline
def p():
    return uses_module(1), uses_function(1), uses_nothing(1)
"""


def _run(tmp_path: Path, helpers_src: str, tag: str) -> tuple[dict[str, str], object]:
    (tmp_path / "helpers.py").write_text(helpers_src)
    pipe_file = tmp_path / f"pipe_{tag}.py"  # a new file each time: a fresh module
    pipe_file.write_text(PIPE)
    sys.modules.pop("helpers", None)
    pipe = corral.load_pipeline(pipe_file)
    result = corral.run(pipe, {}, jobs=2, workdir=tmp_path, source="pipe.py")
    assert result.ok, result.errors
    states = {t["name"]: t["state"] for t in corral.Client(tmp_path).run(result.run_id).tasks()}
    return states, result.value


def test_editing_a_local_module_reruns_its_users(tmp_path: Path) -> None:
    first, value = _run(tmp_path, "def offset(x):\n    return x + 1\ndef scale(x):\n    return 2 * x\n", "a")
    assert value == (2, 2, 1)
    again, _ = _run(tmp_path, "def offset(x):\n    return x + 1\ndef scale(x):\n    return 2 * x\n", "b")
    assert set(again.values()) == {"cached"}
    edited, value = _run(tmp_path, "def offset(x):\n    return x + 10\ndef scale(x):\n    return 2 * x\n", "c")
    assert value == (11, 2, 1), edited
    # both tasks that use helpers.py rerun (the file is the unit), the other stays cached
    assert edited == {"uses_module": "succeeded", "uses_function": "succeeded",
                      "uses_nothing": "cached"}
