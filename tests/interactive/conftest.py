"""Fixtures of the interactive executor's tests: a working directory per test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def wd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, also the current directory of the test."""
    path = tmp_path / "wd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path
