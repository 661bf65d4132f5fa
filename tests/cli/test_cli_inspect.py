"""``corral runs / status / pause / resume / cancel / clean``: their text and --json output,
exit codes, and run control of a run executing in another process."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from corral.store import Store

from .clihelp import (
    Project,
    background_run,
    invoke,
    invoke_json,
    one_line_error,
    status,
    stop,
    wait_for,
)


def _two_runs(project: Project) -> tuple[str, str]:
    a = invoke_json("run", project.file("sums.py"))
    b = invoke_json("run", project.file("sums.py"), "--fail", "true", code=1)
    return a["run"], b["run"]


def test_runs_list_and_json(project: Project) -> None:
    ok, failed = _two_runs(project)
    rows = invoke_json("runs")
    assert [r["id"] for r in rows] == [failed, ok]
    assert [r["state"] for r in rows] == ["failed", "succeeded"]
    assert rows[0]["params"] == {"n": 3, "scale": 1, "fail": True}
    assert rows[0]["pipeline"] == "sums" and rows[0]["source"] == project.file("sums.py")
    assert [r["id"] for r in invoke_json("runs", "--limit", "1")] == [failed]
    table = invoke("runs")
    assert table.exit_code == 0
    assert ok in table.stdout and failed in table.stdout  # whole ids, even 80 columns wide


def test_status_text_json_limit_and_metrics(project: Project) -> None:
    ok, failed = _two_runs(project)
    text = invoke("status").stdout  # latest
    assert f"run {failed}" in text and "boom" in text and "failed" in text
    assert "bad value [/n] 3" in text
    data = invoke_json("status", ok)
    assert data["run"]["id"] == ok and data["run"]["state"] == "succeeded"
    names = [t["name"] for t in data["tasks"]]
    assert names == ["square[0]", "square[1]", "square[2]", "total", "write"]
    assert all(t["attempts"] == 1 and t["wall"] is not None for t in data["tasks"])

    limited = invoke("status", ok, "--limit", "2").stdout  # more tasks than rows: maps grouped
    assert "square[0..2]" in limited and "3 succeeded" in limited and "square[1]" not in limited
    assert "total" in limited and "write" not in limited and "1 more row;" in limited
    assert "write" in invoke("status", ok, "--limit", "0").stdout

    metrics = invoke_json("status", failed, "--metrics")
    assert metrics["summary"]["run_id"] == failed and metrics["summary"]["state"] == "failed"
    assert metrics["summary"]["n_tasks"] == 6
    assert "Critical path" in invoke("status", failed, "--metrics").stdout


def test_unknown_run_and_workdir_are_usage_errors(project: Project, tmp_path: Path) -> None:
    _two_runs(project)
    for args in (["status", "nope"], ["logs", "nope", "x"], ["pause", "nope"],
                 ["cancel", "nope"], ["resume", "nope"], ["why", "nope", "x"],
                 ["report", "nope"], ["runs", "--compare", "nope", "latest"]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
        one_line_error(result.stderr, "no run matches 'nope'", "corral runs")
    gone = tmp_path / "gone"
    result = invoke("runs", "-C", gone)
    assert result.exit_code == 2
    one_line_error(result.stderr, "does not exist", "-C/--workdir")
    assert not gone.exists()


def test_broken_store_exit_4(project: Project) -> None:
    result = invoke("runs", "--db", "sqlite:////nonexistent-dir/x/state.db")
    assert result.exit_code == 4
    one_line_error(result.stderr, "cannot open the state store", "--db URL")


def test_pause_resume_from_another_process(project: Project) -> None:
    proc, run_id = background_run(project, project.file("chain.py"), "--n", "3",
                                  "--seconds", "0.5", "-j", "1")
    try:
        paused = invoke("pause", run_id)
        assert paused.exit_code == 0 and f"pausing run {run_id}" in paused.stdout

        def held() -> dict[str, int] | None:
            s = status(run_id)
            busy = any(t["state"] == "running" for t in s["tasks"].values())
            if s["run"]["state"] != "paused" or busy:
                return None
            return {name: t["attempts"] for name, t in s["tasks"].items()}

        attempts = wait_for(held, what="the run to pause")
        time.sleep(0.8)  # longer than a step: nothing new may start while paused
        s = status(run_id)
        assert s["run"]["control"] == "pause" and proc.poll() is None
        assert {name: t["attempts"] for name, t in s["tasks"].items()} == attempts
        assert s["tasks"]["step2"]["state"] == "pending"

        resumed = invoke("resume", run_id)
        assert resumed.exit_code == 0 and f"resuming run {run_id}" in resumed.stdout
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"run {run_id} succeeded" in out and "result: 3" in out
    finally:
        stop(proc)


def test_cancel_from_another_process(project: Project) -> None:
    proc, run_id = background_run(project, project.file("chain.py"), "--n", "3",
                                  "--seconds", "0.5", "--fail", "false")
    try:
        cancelled = invoke("cancel", run_id)
        assert cancelled.exit_code == 0 and f"cancelling run {run_id}" in cancelled.stdout
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1, (out, err)
        assert f"run {run_id} cancelled" in err
        assert status(run_id)["run"]["state"] == "cancelled"
        # the live engine leaves the tasks that never started cancelled, as a dead one would
        assert status(run_id)["tasks"]["step2"]["state"] == "cancelled"
    finally:
        stop(proc)


def test_control_of_ended_runs(project: Project) -> None:
    ok, failed = _two_runs(project)
    for verb in ("cancel", "pause"):
        for run_id, state in ((ok, "succeeded"), (failed, "failed")):
            result = invoke(verb, run_id)
            assert result.exit_code == 2, (verb, result.output)
            one_line_error(result.stderr, f"run {run_id} already ended ({state})")
            assert status(run_id)["run"]["state"] == state  # history is not rewritten
    assert "already succeeded" in invoke("resume", ok).stdout
    again = invoke("resume", failed)  # no engine: runs it again in the foreground, fails again
    assert again.exit_code == 1 and "boom: failed" in again.stderr


def test_cancel_a_run_without_engine(project: Project) -> None:
    run_id = invoke_json("run", project.file("sums.py"))["run"]
    # as a killed engine leaves it (written directly: a succeeded run never changes state)
    with sqlite3.connect(project.wd / ".corral" / "state.db") as db:
        db.execute("UPDATE runs SET state = 'interrupted' WHERE id = ?", (run_id,))
    result = invoke("cancel", run_id)
    assert result.exit_code == 0 and f"cancelled run {run_id}" in result.stdout
    assert status(run_id)["run"]["state"] == "cancelled"


def _blobs(wd: Path) -> set[str]:
    store = Store.open(wd)
    try:
        return set(store.cas.digests())
    finally:
        store.close()


def test_clean_frees_unused_blobs_and_keeps_used_ones(project: Project) -> None:
    one = invoke_json("run", project.file("big.py"), "--seed", "1")
    two = invoke_json("run", project.file("big.py"), "--seed", "2")
    assert len(one["result"]) == len(two["result"]) == 100_000
    used = _blobs(project.wd)
    store = Store.open(project.wd)
    orphan = store.cas.put_bytes(b"nobody uses this")
    store.close()
    assert orphan not in used and len(used) >= 2

    dry = invoke("clean", "--dry-run", "--min-age", "0")
    assert dry.exit_code == 0 and "would remove 0 results and 1 blobs" in dry.stdout
    assert orphan in _blobs(project.wd)

    result = invoke("clean", "--min-age", "0")
    assert result.exit_code == 0 and "removed 0 results and 1 blobs" in result.stdout
    assert _blobs(project.wd) == used
    assert invoke("clean", "--min-age", "0").stdout.startswith("removed 0 results and 0 blobs")
    assert invoke("clean").exit_code == 0

    # keeping the newest run only frees what the seed=1 run alone used
    kept = invoke("clean", "--keep-runs", "1", "--min-age", "0")
    assert kept.exit_code == 0 and "removed 1 results and 1 blobs" in kept.stdout, kept.stdout
    left = _blobs(project.wd)
    assert left < used and len(left) == len(used) - 1
    assert [r["id"] for r in invoke_json("runs")] == [two["run"]]
    rerun = invoke_json("run", project.file("big.py"), "--seed", "2")
    assert rerun["result"] == two["result"]
    assert {t["state"] for t in status(rerun["run"])["tasks"].values()} == {"cached"}
    fresh = invoke_json("run", project.file("big.py"), "--seed", "1")
    assert fresh["result"] == "1" * 100_000
    assert status(fresh["run"])["tasks"]["blob"]["state"] == "succeeded"


def test_json_outputs_parse_whatever_the_width(project: Project) -> None:
    _two_runs(project)
    for args in (["runs"], ["status"], ["status", "--metrics"]):
        result = invoke(*args, "--json")
        json.loads(result.stdout)


def test_version_and_bare_command(project: Project) -> None:
    import corral

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"corral {corral.__version__}"
    bare = invoke()
    assert bare.exit_code == 2  # usage: the help text, as for any missing command
    assert "Usage: corral" in bare.output and "run" in bare.output
