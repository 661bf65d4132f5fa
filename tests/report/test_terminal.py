from __future__ import annotations

from pathlib import Path

from rich.console import Console, RenderableType

from corral.report.compare import compare_runs, explain_task
from corral.report.metrics import run_metrics
from corral.report.terminal import (
    comparison_renderable,
    explanation_renderable,
    metrics_renderable,
)
from corral.store import Store

from .report_rows import RunBuilder, build_galaxy


def render(r: RenderableType) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(r)
    return console.export_text()


def test_metrics_render(store: Store, galaxy: RunBuilder) -> None:
    text = render(metrics_renderable(run_metrics(store, "run-a")))
    assert "run-a" in text and "CPU efficiency" in text and "roots" in text
    assert "Critical path 1m 40s over 5 tasks: download → prep → roots[3] → merge → plot" in text
    assert "roots: requested 8G, peak 614.4M — request 1G" in text


def test_compare_and_why_render(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    names = ["download", "roots", "merge", "plot", "flaky"]
    build_galaxy(store, tmp_path, "run-b", 1_700_001_000.0,
                 prep={"params": {"n": 5, "scale": 1.0}},
                 **{n: {"cached": True} for n in names})
    text = render(comparison_renderable(compare_runs(store, "run-a", "run-b")))
    assert "1 rerun" in text and "8 reused" in text
    assert "prep" in text and "parameter n: 4 → 5" in text and "download" not in text
    why = render(explanation_renderable(explain_task(store, "run-b", "prep")))
    assert "prep ran because parameter n: 4 → 5 (compared with run run-a)" in why
    assert "params" in why


def test_nothing_reran(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    names = ["download", "prep", "roots", "merge", "plot", "flaky"]
    build_galaxy(store, tmp_path, "run-b", 1_700_001_000.0, **{n: {"cached": True} for n in names})
    assert "nothing reran" in render(comparison_renderable(compare_runs(store, "run-a", "run-b")))
