"""Fixtures of the core tests: a working directory per test and a :class:`Helper` for it.

Tasks defined at module level in these test modules are sent to the local pool by value (the
pool's forkserver cannot import test modules), see :func:`_pickle_test_module_by_value`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from .corehelp import Helper


@pytest.fixture(autouse=True)
def _pickle_test_module_by_value(request: pytest.FixtureRequest) -> None:
    module = getattr(request, "module", None)
    if module is not None and module.__name__ in sys.modules:
        cloudpickle.register_pickle_by_value(module)


@pytest.fixture
def wd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, also the current directory of the test."""
    path = tmp_path / "wd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def helper(wd: Path) -> Iterator[Helper]:
    h = Helper(wd)
    yield h
    h.close()
