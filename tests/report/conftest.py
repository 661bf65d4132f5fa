"""Fixtures of the report tests: a store filled directly with rows (see ``report_rows``).

``tests/report`` is a package, so this conftest is imported as ``report.conftest`` and does not
shadow the ``conftest`` module that other test folders import by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store import Store

from .report_rows import RunBuilder, build_galaxy


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    yield s
    s.close()


@pytest.fixture
def galaxy(store: Store, tmp_path: Path) -> RunBuilder:
    return build_galaxy(store, tmp_path)
