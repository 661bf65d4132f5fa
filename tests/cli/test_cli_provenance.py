"""``corral lineage / why / runs --compare / report / export`` on a small pipeline run twice
(the second run changes ``scale``: total and write run again, the squares are reused)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .clihelp import Project, invoke, invoke_json, one_line_error


@pytest.fixture
def two_runs(project: Project) -> tuple[Project, str, str]:
    first = invoke_json("run", project.file("sums.py"))["run"]
    second = invoke_json("run", project.file("sums.py"), "--scale", "2")["run"]
    return project, first, second


def test_lineage_of_an_output(two_runs: tuple[Project, str, str]) -> None:
    project, _, second = two_runs
    root = invoke_json("lineage", "total.txt")
    assert root["path"] == str(project.wd / "total.txt") and root["raw"] is False
    write = root["produced_by"]
    assert write["name"] == "write" and write["run_id"] == second
    assert len(write["code_hash"]) == 32 and write["params"]["command"].startswith("echo")
    total = next(u for u in write["upstream"] if u["name"] == "total")
    assert total["params"]["scale"] == 2 and total["code_hash"] != write["code_hash"]
    squares = sorted(u["name"] for u in total["upstream"])
    assert squares == ["square[0]", "square[1]", "square[2]"]
    assert {u["params"]["x"] for u in total["upstream"]} == {0, 1, 2}

    text = invoke("lineage", project.wd / "total.txt").stdout
    assert "write" in text and "total" in text and "square[2]" in text
    assert write["code_hash"][:12] in text and '"scale": 2' in text

    missing = invoke("lineage", "nothing.txt")
    assert missing.exit_code == 2
    one_line_error(missing.stderr, "no task of any run wrote", "nothing.txt")


def test_why_a_task_ran_or_was_reused(two_runs: tuple[Project, str, str]) -> None:
    _, first, second = two_runs
    ran = invoke_json("why", second, "total")
    assert ran["outcome"] == "ran" and ran["previous_run"] == first
    assert [(r["kind"], r["subject"]) for r in ran["reasons"]] == [("params", "scale")]
    reused = invoke_json("why", "latest", "square[1]")
    assert reused["outcome"] == "reused" and reused["source_run"] == first
    text = invoke("why", second, "total").stdout
    assert "parameter scale: 1 → 2" in text
    unknown = invoke("why", second, "nosuch")
    assert unknown.exit_code == 2
    one_line_error(unknown.stderr, "nosuch")


def test_compare_two_runs(two_runs: tuple[Project, str, str]) -> None:
    _, first, second = two_runs
    diff = invoke_json("runs", "--compare", first, second)
    assert diff["run_a"] == first and diff["run_b"] == second
    assert diff["counts"] == {"reused": 3, "rerun": 2}
    status = {c["name"]: c["status"] for c in diff["changes"]}
    assert status["total"] == status["write"] == "rerun" and status["square[0]"] == "reused"
    text = " ".join(invoke("runs", "--compare", first, second).stdout.split())  # unwrapped
    assert "2 rerun, 3 reused" in text and "parameter scale: 1 → 2" in text


def test_report_html(two_runs: tuple[Project, str, str], tmp_path: Path) -> None:
    _, _, second = two_runs
    out = tmp_path / "x.html"
    result = invoke("report", second, "-o", out)
    assert result.exit_code == 0 and str(out) in result.stdout
    html = out.read_text()
    assert html.startswith("<!") and second in html and "sums" in html


def test_export_ro_crate_prov_and_script(two_runs: tuple[Project, str, str], tmp_path: Path) -> None:
    _, _, second = two_runs
    crate = tmp_path / "crate"
    prov = tmp_path / "prov.json"
    result = invoke("export", second, "--ro-crate", crate, "--prov", prov)
    assert result.exit_code == 0, result.output
    meta = json.loads((crate / "ro-crate-metadata.json").read_text())
    assert any("total.txt" in str(e.get("@id", "")) for e in meta["@graph"])
    assert "activity" in json.loads(prov.read_text())

    script = tmp_path / "pipeline.sh"
    result = invoke("export", second, "--format", "sbatch", "-o", script)
    assert result.exit_code == 0, result.output
    assert script.read_text().startswith("#!/usr/bin/env bash")

    nothing = invoke("export", second)
    assert nothing.exit_code == 2
    one_line_error(nothing.stderr, "--format sbatch|sge", "--ro-crate DIR")
    unknown = invoke("export", second, "--format", "zip")
    assert unknown.exit_code == 2
    one_line_error(unknown.stderr, "'zip'", "sbatch, sge")
