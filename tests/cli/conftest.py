"""Fixtures of the command-line tests: a project directory with the pipeline files of
``clihelp`` and an empty working directory (also the current directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .clihelp import PIPELINES, Project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    wd = tmp_path / "wd"
    wd.mkdir()
    for name, source in PIPELINES.items():
        (tmp_path / name).write_text(source)
    monkeypatch.chdir(wd)
    return Project(tmp_path, wd)
