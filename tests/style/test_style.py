"""The code stays ruff clean and mypy --strict clean (the library, the benchmarks, the examples,
the tests), and keeps the layers of docs/architecture.md (import-linter's contracts in
pyproject.toml), so CI enforces what `make check` checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; run `make dev-venv` (it is in the dev extra)")
    return found


def _check(argv: list[str]) -> None:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)  # noqa: S603
    # plain text in the failure message: lint-imports colours its output even into a pipe
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"{' '.join(argv)}:\n{out}"


def test_ruff_clean() -> None:
    _check([_tool("ruff"), "check", "src", "tests", "bench", "examples"])


@pytest.mark.parametrize("target", [
    "src/corral", "bench", "tests",
    *sorted(f"examples/{p.name}" for p in (ROOT / "examples").iterdir()
            if p.is_dir() and any(p.glob("*.py"))),
])
def test_mypy_strict_clean(target: str) -> None:
    """Each example separately: they all have a pipeline.py, which mypy would see as one
    module twice. The tests with --explicit-package-bases: tests/batch and tests/remote have no
    __init__.py (pytest imports their modules under their own names) and each has a conftest.py;
    pyproject's mypy_path lets tests/remote import its conftest and remote_helpers by name."""
    bases = ["--explicit-package-bases"] if target == "tests" else []
    _check([_tool("mypy"), *bases, target])  # strict, from pyproject.toml


def test_import_contracts_kept() -> None:
    """`lint-imports` keeps every contract of pyproject.toml's [tool.importlinter]: the layers
    (a module imports nothing from a layer above its own), only corral.store imports SQLAlchemy,
    no import cycles between sibling modules. Fails with import-linter's list of the imports
    that break a contract (file, line, import)."""
    _check([_tool("lint-imports"), "--no-cache"])


USER_PIPELINE = '''
from corral import each, pipeline, task

@task
def listing(n: int) -> list[int]:
    return list(range(n))

@task
def sq(x: int) -> int:
    return x * x

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@pipeline
def inner(n: int) -> int:
    return total(sq.map(x=each(listing(n))))

@pipeline(name="outer")
def outer(n: int = 3) -> int:
    return inner("three")
'''


def test_user_pipelines_type_check(tmp_path: Path) -> None:
    """What users write type-checks as plain Python (futures are typed as the tasks' values,
    each() takes a task call), and a wrong call to a nested pipeline is caught by mypy."""
    (tmp_path / "user_pipeline.py").write_text(USER_PIPELINE)
    proc = subprocess.run(  # noqa: S603
        [_tool("mypy"), "--strict", "--no-incremental", "user_pipeline.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1, proc.stdout
    assert 'Argument 1 to "__call__" of "Pipeline" has incompatible type "str"' in errors[0]
