"""Fixtures of the report tests: a store filled directly with rows (see ``report_rows``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from report_rows import RunBuilder, build_galaxy

from corral.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    yield s
    s.close()


@pytest.fixture
def galaxy(store: Store, tmp_path: Path) -> RunBuilder:
    return build_galaxy(store, tmp_path)
