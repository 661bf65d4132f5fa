"""``corral status RUN --watch``: refreshed until the run ends; exit 0 only if it succeeded."""

from __future__ import annotations

import json
import time

from .clihelp import Project, background_run, corral, invoke, invoke_json, one_line_error, stop


def test_watch_a_background_run_to_its_end(project: Project) -> None:
    proc, run_id = background_run(project, project.file("chain.py"), "--n", "3",
                                  "--seconds", "0.4")
    try:
        watched = corral("status", run_id, "--watch", "--interval", "0.2", cwd=project.wd)
        assert watched.returncode == 0, watched.stderr
        # not a terminal: only the final view is printed
        assert watched.stdout.count(f"run {run_id}") == 1
        assert "succeeded" in watched.stdout and "step2" in watched.stdout
        assert "running" not in watched.stdout
        proc.wait(20)
        assert proc.returncode == 0
    finally:
        stop(proc)


def test_watch_json_of_a_failing_run(project: Project) -> None:
    proc, run_id = background_run(project, project.file("chain.py"), "--n", "2",
                                  "--seconds", "0.4", "--fail", "true")
    try:
        watched = invoke("status", run_id, "--watch", "--interval", "0.2", "--json")
        assert watched.exit_code == 1
        final = json.loads(watched.stdout)  # the final JSON only
        assert final["run"]["id"] == run_id and final["run"]["state"] == "failed"
        states = {t["name"]: t["state"] for t in final["tasks"]}
        assert states == {"step0": "succeeded", "step1": "failed"}
        assert f"corral logs {run_id}" in watched.stderr
        proc.wait(20)
        assert proc.returncode == 1
    finally:
        stop(proc)


def test_watch_an_ended_run_returns_at_once(project: Project) -> None:
    ok = invoke_json("run", project.file("sums.py"))["run"]
    failed = invoke_json("run", project.file("sums.py"), "--fail", "1", code=1)["run"]
    start = time.monotonic()
    result = invoke("status", ok, "--watch", "--interval", "30")
    assert result.exit_code == 0 and f"run {ok}" in result.stdout
    assert invoke("status", failed, "--watch", "--interval", "30").exit_code == 1
    assert json.loads(invoke("status", "--watch", "--json").stdout)["run"]["id"] == failed
    assert time.monotonic() - start < 5


def test_watch_usage_errors(project: Project) -> None:
    invoke_json("run", project.file("sums.py"))
    both = invoke("status", "--watch", "--metrics")
    assert both.exit_code == 2
    one_line_error(both.stderr, "--watch and --metrics")
    assert invoke("status", "--watch", "--interval", "0").exit_code == 2
    unknown = invoke("status", "nope", "--watch")
    assert unknown.exit_code == 2
    one_line_error(unknown.stderr, "no run matches 'nope'")
