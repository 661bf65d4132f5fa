from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corral.errors import RunNotFound
from corral.report.compare import Comparison, compare_runs, explain_task
from corral.store import Store

from .report_rows import RunBuilder, build_galaxy

NAMES = ["download", "prep", "roots", "merge", "plot", "flaky"]


def second_run(store: Store, tmp_path: Path, rerun: set[str], **changes: Any) -> RunBuilder:
    """Run B of the galaxy pipeline: tasks outside ``rerun`` are reused from the cache."""
    opts: dict[str, dict[str, Any]] = {n: {"cached": n not in rerun} for n in NAMES}
    for name, change in changes.items():
        opts[name].update(change)
    return build_galaxy(store, tmp_path, "run-b", 1_700_001_000.0, **opts)


def by_name(c: Comparison) -> dict[str, Any]:
    return {ch.name: ch for ch in c.changes}


def test_parameter_change(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    downstream = {"prep", "roots", "merge", "plot", "flaky"}
    second_run(store, tmp_path, downstream, prep={"params": {"n": 5, "scale": 1.0}})
    c = by_name(compare_runs(store, "run-a", "run-b"))
    assert c["download"].status == "reused" and c["download"].reasons == []
    assert c["prep"].status == "rerun"
    assert [r.message for r in c["prep"].reasons] == ["parameter n: 4 → 5"]
    assert c["prep"].reasons[0].subject == "n"
    assert [r.message for r in c["roots[2]"].reasons] == ["upstream task prep changed"]
    assert c["merge"].reasons[0].kind == "upstream"


def test_code_change(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    second_run(store, tmp_path, {"merge", "plot"}, merge={"code": "code-2"})
    comparison = compare_runs(store, "run-a", "run-b")
    c = by_name(comparison)
    assert c["merge"].reasons[0].kind == "code"
    assert c["merge"].reasons[0].message == "code changed (code-1 → code-2)"
    assert c["plot"].reasons[0].message == "upstream task merge changed"
    assert comparison.counts() == {"reused": 7, "rerun": 2}


def test_input_change_names_the_file(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    raw = str(tmp_path / "data" / "raw.csv")
    second_run(store, tmp_path, {"prep"}, prep={"inputs": {raw: "d-raw-2"}})
    (reason,) = by_name(compare_runs(store, "run-a", "run-b"))["prep"].reasons
    assert reason.kind == "input" and reason.subject == raw
    assert reason.message == f"input file {raw} changed (d-raw-1 → d-raw-2)"


def test_new_and_removed_tasks(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    b = RunBuilder(store, "run-b", 1_700_001_000.0, tmp_path)
    b.task("prep", cached=True, params={"n": 4, "scale": 1.0})
    b.task("stats", upstream=["prep"])
    c = by_name(compare_runs(store, "run-a", "run-b"))
    assert c["stats"].status == "new"
    assert c["merge"].status == "removed"
    assert c["merge"].reasons[0].message == "not in run run-b"


def test_forced_and_previously_failed(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    second_run(store, tmp_path, {"plot", "flaky"}, flaky={"state": "succeeded"})
    c = by_name(compare_runs(store, "run-a", "run-b"))
    assert c["plot"].reasons[0].kind == "forced"
    assert c["flaky"].reasons[0].kind == "failed"
    assert c["flaky"].reasons[0].message == "previous attempt failed in run run-a"


def test_why_follows_upstream_to_the_root_cause(
    store: Store, tmp_path: Path, galaxy: RunBuilder
) -> None:
    downstream = {"prep", "roots", "merge", "plot", "flaky"}
    second_run(store, tmp_path, downstream, prep={"params": {"n": 5, "scale": 1.0}})
    e = explain_task(store, "run-b", "plot")
    assert e.outcome == "ran" and e.previous_run == "run-a"
    (merge,) = e.reasons
    assert merge.message == "upstream task merge changed"
    roots = merge.causes
    assert {r.subject for r in roots} == {f"roots[{i}]" for i in range(4)}
    prep = roots[0].causes[0]
    assert prep.subject == "prep" and prep.causes[0].message == "parameter n: 4 → 5"
    assert e.summary == "plot ran because upstream task merge changed (compared with run run-a)"


def test_why_reused_names_the_producing_run(
    store: Store, tmp_path: Path, galaxy: RunBuilder
) -> None:
    second_run(store, tmp_path, {"plot"})
    e = explain_task(store, "run-b", "prep")
    assert e.outcome == "reused" and e.source_run == "run-a"
    assert "reused from the cache" in e.summary


def test_why_never_ran_before_and_retries(store: Store, galaxy: RunBuilder) -> None:
    e = explain_task(store, "run-a", "prep")
    assert e.reasons[0].kind == "new" and "never ran before" in e.reasons[0].message
    flaky = explain_task(store, "run-a", "flak")  # unique prefix
    assert flaky.task == "flaky"
    assert flaky.reasons[-1].message == "took 2 attempts (1: out_of_memory, 2: failed)"


def test_why_unknown_task_names_the_fix(store: Store, galaxy: RunBuilder) -> None:
    with pytest.raises(RunNotFound, match="corral status"):
        explain_task(store, "run-a", "nope")


def test_comparison_json(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    second_run(store, tmp_path, {"plot"})
    data = compare_runs(store, "run-a", "run-b").to_json()
    assert data["run_a"] == "run-a" and data["counts"]["rerun"] == 1
