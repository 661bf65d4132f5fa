from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from corral.errors import RunNotFound
from corral.report.lineage import lineage, lineage_tree
from corral.store import Store

from .report_rows import RunBuilder, build_galaxy


def test_lineage_goes_down_to_raw_inputs(
    store: Store, tmp_path: Path, galaxy: RunBuilder
) -> None:
    root = lineage(store, tmp_path / "out" / "plot.png")
    assert root.digest == "d-plot" and root.note == "the file no longer exists on disk"
    plot = root.produced_by
    assert plot is not None and plot.name == "plot" and plot.run_id == "run-a"
    assert plot.params == {"style": "dark"} and plot.host == "node1"
    (merge,) = plot.upstream
    assert [r.name for r in merge.upstream] == [f"roots[{i}]" for i in range(4)]
    first, *others = [r.upstream[0] for r in merge.upstream]
    assert first.name == "prep" and not first.repeated
    assert all(p.repeated and not p.upstream for p in others)
    (raw,) = first.inputs
    assert raw.raw and raw.path.endswith("data/raw.csv") and raw.digest == "d-raw-1"
    assert first.upstream[0].name == "download"


def test_reused_tasks_point_to_the_run_that_computed_them(
    store: Store, tmp_path: Path, galaxy: RunBuilder
) -> None:
    names = ["download", "prep", "roots", "merge", "flaky"]
    opts = {n: {"cached": True} for n in names}
    build_galaxy(store, tmp_path, "run-b", 1_700_001_000.0,
                 plot={"params": {"style": "light"}}, **opts)
    plot = lineage(store, tmp_path / "out" / "plot.png").produced_by
    assert plot is not None and plot.run_id == "run-b"
    (merge,) = plot.upstream
    assert merge.run_id == "run-a" and merge.reused_by == "run-b"
    assert merge.host == "node1" and merge.attempt_id == "run-a-merge-1"


def test_file_unchanged_on_disk_has_no_note(store: Store, tmp_path: Path) -> None:
    from corral.hashing import file_digest

    out = tmp_path / "result.txt"
    out.write_text("42\n")
    b = RunBuilder(store, "r", 1.0, tmp_path)
    b.task("make", outputs={str(out): file_digest(out)})
    root = lineage(store, out)
    assert root.note is None
    out.write_text("43\n")
    assert lineage(store, out).note == "the file changed on disk after it was produced"


def test_unknown_file_names_the_fix(store: Store, tmp_path: Path) -> None:
    with pytest.raises(RunNotFound, match="declare as outputs"):
        lineage(store, tmp_path / "nothing.txt")


def test_tree_and_json_rendering(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    root = lineage(store, tmp_path / "out" / "plot.png")
    console = Console(width=160, record=True)
    console.print(lineage_tree(root))
    text = console.export_text()
    assert "plot" in text and "raw input" in text and "(shown above)" in text
    data = json.loads(json.dumps(root.to_json()))
    assert data["produced_by"]["upstream"][0]["name"] == "merge"
