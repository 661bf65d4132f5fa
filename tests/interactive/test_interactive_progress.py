"""The progress display of ``corral.Executor`` in a terminal (a rich bar on standard error);
the Jupyter display is checked by the notebook test (test_interactive_notebook.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import corral


def square(x: int) -> int:
    return x * x


def test_a_terminal_bar_counts_the_calls(wd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with corral.Executor(workdir=wd, jobs=2, name="squares", progress=True) as ex:
        assert list(ex.map(square, range(12))) == [x * x for x in range(12)]
    err = capsys.readouterr().err
    assert "squares" in err and "12/12" in err, err
    assert "\x1b[" in err  # drawn for a terminal, in place


def test_no_display_when_off_or_not_a_terminal(wd: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with corral.Executor(workdir=wd, progress=False) as ex:
        assert list(ex.map(square, range(3))) == [0, 1, 4]
    with corral.Executor(workdir=wd) as ex:  # automatic: standard error is captured here
        assert list(ex.map(square, range(3))) == [0, 1, 4]
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_a_bad_progress_value_is_refused(wd: Path) -> None:
    with pytest.raises(corral.CorralError, match="progress='yes' must be True, False or None"):
        corral.Executor(workdir=wd, progress="yes")  # type: ignore[arg-type]
