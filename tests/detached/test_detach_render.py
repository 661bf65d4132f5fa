"""A shell task fed by a Python task's value in detached mode (issue 19): its command is
rendered on the node when its job starts, on the real local SLURM and Grid Engine."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import corral
from corral.engine.detached import load_state, submit_detached
from corral.store import Store

from .test_detach import _cfg, sched  # noqa: F401 - sched is a fixture

PIPE = '''
from pathlib import Path
from corral import pipeline, shell, task


@task
def count() -> int:
    return 7


@task
def name_file(stem: str) -> Path:
    return Path(f"{stem}.txt")


@task
def broken() -> int:
    raise ValueError("no count today")


@pipeline
def rendered():
    n = count()
    target = name_file("made")
    return shell("echo {params.n} {params.n}x > {output} && echo made > {params.target}",
                 params={"n": n, "target": target}, outputs="count.txt", name="write")


@task(retries=1)
def flaky_count() -> int:
    import os
    if os.environ["CORRAL_ATTEMPT"] == "1":
        raise RuntimeError("attempt 1 fails")
    return 42


@pipeline
def after_retry():
    # the shell task fails its own first attempt too: its retry renders again
    return shell('test "$CORRAL_ATTEMPT" = 2 && echo {params.n} > {output}',
                 params={"n": flaky_count()}, outputs="retried.txt", name="write", retries=1)


@pipeline
def upstream_fails():
    return shell("echo {params.n} > {output}", params={"n": broken()}, outputs="never.txt",
                 name="write")
'''


def _load(tmp_path: Path, name: str) -> Any:
    path = tmp_path / "pipe_render.py"
    if not path.exists():
        path.write_text(PIPE)
    return corral.load_pipeline(path, name)


def _status(tmp_path: Path, run_id: str) -> tuple[int, dict[str, Any]]:
    """``corral status RUN --watch`` (reconciles until the run ends), then ``--json``."""
    cli = [sys.executable, "-m", "corral.cli.app", "status", run_id, "-C", str(tmp_path)]
    watched = subprocess.run([*cli, "--watch", "--interval", "1"],  # noqa: S603 - our CLI
                             capture_output=True, text=True, timeout=120, check=False)
    shown = subprocess.run([*cli, "--json"], capture_output=True, text=True,  # noqa: S603
                           timeout=60, check=True)
    return watched.returncode, json.loads(shown.stdout)


def test_shell_task_takes_python_value(tmp_path: Path, sched: str) -> None:
    run_id = submit_detached(_load(tmp_path, "rendered"), {}, _cfg(tmp_path, sched))
    code, shown = _status(tmp_path, run_id)
    assert code == 0, shown
    assert shown["run"]["state"] == "succeeded", shown
    assert {t["name"]: t["state"] for t in shown["tasks"]} == {
        "count": "succeeded", "name_file": "succeeded", "write": "succeeded"}, shown
    # the command was written on the node from the upstream results
    assert (tmp_path / "count.txt").read_text() == "7 7x\n"
    assert (tmp_path / "made.txt").read_text() == "made\n"
    handle = corral.Client(tmp_path).run(run_id)
    assert Path(handle.task_result("write")).name == "count.txt"
    state = load_state(Store.open(tmp_path), run_id)
    assert state is not None
    write = next(t for t in state.tasks.values() if t.name == "write")
    assert Path(write.workdir, "deferred.pkl").is_file()  # rendered there, not at submission


def test_shell_task_skipped_when_python_upstream_fails(tmp_path: Path, sched: str) -> None:
    run_id = submit_detached(_load(tmp_path, "upstream_fails"), {}, _cfg(tmp_path, sched))
    code, shown = _status(tmp_path, run_id)
    assert code == 1, shown
    assert shown["run"]["state"] == "failed", shown
    states = {t["name"]: t["state"] for t in shown["tasks"]}
    assert states == {"broken": "failed", "write": "skipped"}, shown
    assert not (tmp_path / "never.txt").exists()


def test_shell_task_rendered_from_the_retried_value(tmp_path: Path, sched: str) -> None:
    """The Python task fails once and is retried by ``corral status``: the shell task below
    it (resubmitted) renders its command from attempt 2's result; it fails once itself, and
    its retry renders the command again from the kept template."""
    run_id = submit_detached(_load(tmp_path, "after_retry"), {}, _cfg(tmp_path, sched))
    code, shown = _status(tmp_path, run_id)
    assert code == 0 and shown["run"]["state"] == "succeeded", shown
    assert (tmp_path / "retried.txt").read_text() == "42\n"
    attempts = {t["name"]: [a["state"] for a in Store.open(tmp_path).attempts(run_id)
                            if a["task_id"] == t["id"]]
                for t in Store.open(tmp_path).tasks(run_id)}
    assert attempts == {"flaky_count": ["failed", "succeeded"],
                        "write": ["withdrawn", "failed", "succeeded"]}, attempts
    state = load_state(Store.open(tmp_path), run_id)
    assert state is not None
    write = next(t for t in state.tasks.values() if t.name == "write")
    assert write.workdir.endswith(".3")  # rendered there from the template, not copied
    assert Path(write.workdir, "deferred.pkl").is_file()


def test_render_failure_fails_the_attempt(tmp_path: Path) -> None:
    """A command that cannot be rendered from the upstream value fails with a marker saying
    why (no cluster needed: the worker's entry point run here)."""
    from corral.engine.detached.submit import shell_payload
    from corral.model import ShellSpec
    from corral.worker.__main__ import main
    from corral.worker.execute import ResultRef, read_marker

    upstream = tmp_path / "result.pkl"
    upstream.write_bytes(pickle.dumps({"a": 1}))
    # the value of an upstream task that has not run yet, as detached mode names it
    spec = ShellSpec("echo {params.n.b} > {output}", None, "out.txt",
                     {"n": ResultRef(str(upstream))})
    _, payload = shell_payload(spec, lambda fut: None)
    attempt = tmp_path / "attempt"
    attempt.mkdir()
    (attempt / "payload.pkl").write_bytes(payload)
    assert main([str(attempt), "--cwd", str(tmp_path)]) == 1
    marker = read_marker(attempt)
    assert marker is not None and marker["outcome"] == "failed", marker
    assert "could not be rendered" in marker["error"] and "AttributeError" in marker["error"]
    assert not (tmp_path / "out.txt").exists()
