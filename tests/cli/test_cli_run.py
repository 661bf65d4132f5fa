"""``corral run``: typed parameters, exit codes, --json, refusals before anything runs, task
failures and their tracebacks in ``corral logs``, interruption by a signal and resuming."""

from __future__ import annotations

import json
import signal

import pytest

from .clihelp import (
    Project,
    background_run,
    corral,
    invoke,
    invoke_json,
    one_line_error,
    status,
    wait_for,
)


def test_run_json_result_and_cache(project: Project) -> None:
    first = invoke("run", project.file("sums.py"), "--n", "4", "--scale=2", "--json")
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["state"] == "succeeded" and out["errors"] == []
    assert out["result"] == (0 + 1 + 4 + 9) * 2
    assert (project.wd / "total.txt").read_text().strip() == "28"
    tasks = status(out["run"])["tasks"]
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    assert set(tasks) == {"square[0]", "square[1]", "square[2]", "square[3]", "total", "write"}

    again = invoke_json("run", project.file("sums.py"), "--n", "4", "--scale", "2")
    assert again["run"] != out["run"] and again["result"] == 28
    assert {t["state"] for t in status(again["run"])["tasks"].values()} == {"cached"}


@pytest.mark.parametrize("args", [
    ["--token", "abc"], ["--jobs", "3"], ["-j", "3"], ["--no-cache"],
])
def test_a_parameter_named_like_an_option_of_run_is_not_taken_silently(
    project: Project, args: list[str]
) -> None:
    """Without ``--`` the value would go to corral run's option and the pipeline would run
    with its default: refused, before anything runs, with the way to say it."""
    result = invoke("run", project.file("clash.py"), *args)
    assert result.exit_code == 2, result.output
    flag = {"-j": "--jobs"}.get(args[0], args[0])
    one_line_error(result.stderr, f"{flag} is an option of corral run and a parameter of "
                   "pipeline clash", f"-- {flag} VALUE")
    assert invoke_json("runs") == []


def test_a_parameter_named_like_an_option_of_run_goes_after_the_double_dash(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_REPORT_TOKEN", "from-the-environment")  # not the parameter's
    result = invoke("run", project.file("clash.py"), "-j", "2", "--no-cache", "--json",
                    "--", "--token", "abc", "--jobs", "3", "--no-cache")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "abc/3/False"
    assert invoke_json("run", project.file("clash.py"))["result"] == "none/1/True"


def test_run_text_output_names_the_pipeline_by_name(project: Project) -> None:
    result = invoke("run", project.file("sums.py"), "sums", "--n", "2", "--fail", "false")
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout and "result: 1" in result.stdout


@pytest.mark.parametrize(("args", "words"), [
    (["--m", "3"], ["no parameter --m", "--n, --scale, --fail"]),
    (["--n", "x"], ["--n expects int", "e.g. --n 14"]),
    (["--fail", "maybe"], ["--fail expects bool"]),
    (["--n", "[/x]"], ["--n expects int", "[/x]"]),  # rich markup in a value is printed as is
    (["stray"], ["has no pipeline 'stray'"]),
    (["-j", "0"], ["jobs=0 (-j/--jobs) must be a whole number >= 1", "leave it out"]),
    (["-j", "-2"], ["jobs=-2 (-j/--jobs) must be a whole number >= 1"]),
])
def test_bad_parameters_exit_2_with_one_line(project: Project, args: list[str],
                                             words: list[str]) -> None:
    result = invoke("run", project.file("sums.py"), *args)
    assert result.exit_code == 2, result.output
    one_line_error(result.stderr, *words)
    assert result.stdout == ""
    assert invoke_json("runs") == []


def test_missing_pipeline_file(project: Project) -> None:
    result = invoke("run", project.root / "nope.py")
    assert result.exit_code == 2
    one_line_error(result.stderr, "nope.py", "does not exist", "check the path")


@pytest.mark.parametrize(("pipeline", "words"), [
    ("cycle", ["cycle", "ab", "ba"]),
    ("missing", ["task copy", "nothere.txt", "does not exist", "create it or fix the path"]),
    ("twice", ["same.txt", "task one", "task two", "give each task its own output"]),
    ("unpicklable", ["task use", "cannot be pickled", "pass plain data"]),
    ("unhashable", ["task use", "Thing", "corral.hashing.register"]),
    (None, ["several pipelines", "name one"]),
])
def test_bad_graph_refused_before_anything_runs(project: Project, pipeline: str | None,
                                                words: list[str]) -> None:
    args = [project.file("bad.py")] + ([pipeline] if pipeline else [])
    result = invoke("run", *args)
    assert result.exit_code == 2, result.output
    one_line_error(result.stderr, *words)
    assert invoke_json("runs") == []
    assert not any((project.wd).glob("*.txt"))


def test_failed_task_exit_1_and_traceback_in_logs(project: Project) -> None:
    result = invoke("run", project.file("sums.py"), "--fail", "true")
    assert result.exit_code == 1, result.output
    run_id = json.loads(invoke("runs", "--json").stdout)[0]["id"]
    assert f"run {run_id} failed" in result.stderr
    assert "boom: failed: ValueError: bad value [/n] 3" in result.stderr
    assert f"corral logs {run_id} TASK" in result.stderr
    # the rest of the graph finished
    tasks = status(run_id)["tasks"]
    assert tasks["boom"]["state"] == "failed" and tasks["write"]["state"] == "succeeded"

    logs = invoke("logs", run_id, "boom")
    assert logs.exit_code == 0, logs.output
    text = logs.stdout
    assert "attempt 1: failed" in text and "about to fail" in text
    assert "Traceback (most recent call last)" in text
    assert f'File "{project.file("sums.py")}"' in text and "in boom" in text
    assert 'raise ValueError(f"bad value [/n] {x}")' in text
    assert text.rstrip().endswith("ValueError: bad value [/n] 3")

    one_line_error(invoke("logs", run_id, "boom", "--attempt", "2").stderr,
                   "no attempt 2", "its attempts are 1")
    missing = invoke("logs", run_id, "nosuch")
    assert missing.exit_code == 2
    one_line_error(missing.stderr, "nosuch", f"corral status {run_id}")
    assert "has no attempts" not in invoke("logs", run_id, "total").stdout


def test_failed_run_json(project: Project) -> None:
    result = invoke("run", project.file("sums.py"), "--fail", "yes", "--json")
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert out["state"] == "failed" and out["result"] is None
    assert out["errors"] == ["boom: failed: ValueError: bad value [/n] 3"]


def test_cached_task_has_no_attempts(project: Project) -> None:
    invoke("run", project.file("sums.py"), "-q")
    again = invoke_json("run", project.file("sums.py"))
    logs = invoke("logs", again["run"], "total")
    assert logs.exit_code == 0
    assert "has no attempts" in logs.stdout and "reused from the cache" in logs.stdout


def test_real_process_exit_codes(project: Project) -> None:
    ok = corral("run", project.file("sums.py"), "--n", "2", cwd=project.wd)
    assert ok.returncode == 0, ok.stderr
    assert "succeeded" in ok.stdout
    failed = corral("run", project.file("sums.py"), "--fail", "1", cwd=project.wd)
    assert failed.returncode == 1
    bad = corral("run", project.file("sums.py"), "--n", "many", cwd=project.wd)
    assert bad.returncode == 2
    one_line_error(bad.stderr, "--n expects int")
    usage = corral("status", "--limit", "x", cwd=project.wd)
    assert usage.returncode == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_interrupts_then_same_command_resumes(project: Project, sig: int) -> None:
    args = [project.file("chain.py"), "--n", "3", "--seconds", "0.6"]
    proc, run_id = background_run(project, *args)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    # the CLI's own line (under load the local fork server has been seen adding a traceback of
    # its own to the same stderr when the engine goes away: not the CLI's doing)
    assert f"run {run_id} interrupted; run the same command again to resume\n" in err, err
    assert status(run_id)["run"]["state"] == "interrupted"

    watched = invoke("status", run_id, "--watch")
    assert watched.exit_code == 1
    assert f"corral resume {run_id}" in watched.stderr

    again = corral("run", *args, "-q", cwd=project.wd)
    assert again.returncode == 0, again.stderr
    assert f"resuming run {run_id} (interrupted)" in again.stderr
    assert f"run {run_id} succeeded" in again.stdout
    steps = wait_for(lambda: status(run_id)["tasks"])
    assert {t["state"] for t in steps.values()} == {"succeeded"}


def test_run_help_lists_the_pipeline_parameters(project: Project) -> None:
    helped = invoke("run", project.file("sums.py"), "--help")
    assert helped.exit_code == 0, helped.output
    assert "Usage: corral run" in helped.output and "Pipeline sums" in helped.output
    rows = {line.split()[0]: line.split()[1:] for line in helped.output.splitlines()
            if line.strip().startswith("--n ") or line.strip().startswith("--fail")}
    assert rows["--n"] == ["int", "3"]
    assert rows["--fail"] == ["/", "--no-fail", "bool", "False"]
    assert not (project.wd / ".corral").exists()  # help runs nothing, creates no store

    first = invoke("run", "--help", project.file("sums.py"))  # --help before FILE
    assert first.exit_code == 0 and "Pipeline sums" in first.output, first.output
    named = invoke("run", "--help", project.file("sums.py"), "sums")
    assert named.exit_code == 0 and "Pipeline sums" in named.output, named.output

    bare = invoke("run", "--help")
    assert bare.exit_code == 0 and "Usage: corral run" in bare.output
    broken = invoke("run", "nope.py", "--help")
    assert broken.exit_code == 0 and "Usage: corral run" in broken.output
    assert "cannot list the pipeline's parameters" in broken.stderr

    missing = invoke("run")
    assert missing.exit_code == 2
    one_line_error(missing.stderr, "missing FILE", "corral run --help")


BIG_VALUE = '''
from corral import pipeline, task

@task
def make(n: int) -> bytes:
    return b"x" * n

@task
def length(data: bytes) -> int:
    return len(data)

@pipeline
def big(n: int = 200_000):
    return length(make(n))
'''


def test_a_large_value_reaches_the_next_task_with_a_relative_workdir(project: Project) -> None:
    """A value over the inline limit goes to the next task by reference to the store, which
    must resolve from the task's directory too (`make demo` runs with --workdir out/demo)."""
    (project.root / "bigvalue.py").write_text(BIG_VALUE)
    (project.wd / "out").mkdir()
    done = corral("run", project.file("bigvalue.py"), "--workdir", "out", "-q", cwd=project.wd)
    assert done.returncode == 0, done.stderr
    assert "result: 200000" in done.stdout
