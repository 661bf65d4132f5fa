"""Helpers of the command-line tests: small pipeline files, ``corral`` in process (typer's
CliRunner) or as a real subprocess, and checks of the one-line errors."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from corral.cli.app import app

CORRAL = str(Path(sys.executable).parent / "corral")

PIPELINES = {
    # square.map -> total -> a shell task writing total.txt; boom fails when asked
    "sums.py": textwrap.dedent('''
        from corral import pipeline, shell, task

        @task
        def square(x: int) -> int:
            return x * x

        @task
        def total(values: list[int], scale: int) -> int:
            return sum(values) * scale

        @task
        def boom(x: int) -> int:
            print("about to fail")
            raise ValueError(f"bad value [/n] {x}")

        @pipeline
        def sums(n: int = 3, scale: int = 1, fail: bool = False):
            t = total(square.map(x=range(n)), scale)
            shell("echo {params.t} > {output}", outputs="total.txt", params={"t": t}, name="write")
            if fail:
                boom(n)
            return t
        '''),
    # a chain of sleeping steps: slow enough to be paused, cancelled, interrupted, watched
    "chain.py": textwrap.dedent('''
        import time
        from corral import pipeline, task

        @task
        def step(prev: int, seconds: float, fail: bool) -> int:
            time.sleep(seconds)
            if fail:
                raise RuntimeError("step failed on purpose")
            return prev + 1

        @pipeline
        def chain(n: int = 3, seconds: float = 0.5, fail: bool = False):
            x = 0
            for i in range(n):
                x = step.options(name=f"step{i}")(x, seconds, fail and i == n - 1)
            return x
        '''),
    # every kind of input refused before anything runs
    "bad.py": textwrap.dedent('''
        import threading
        from corral import pipeline, shell, task

        @task
        def use(x: object) -> int:
            return 1

        class Thing:
            pass

        @pipeline
        def cycle():
            shell("cat {input} > {output}", inputs="a.txt", outputs="b.txt", name="ab")
            shell("cat {input} > {output}", inputs="b.txt", outputs="a.txt", name="ba")

        @pipeline
        def missing():
            shell("cat {input} > {output}", inputs="nothere.txt", outputs="c.txt", name="copy")

        @pipeline
        def twice():
            shell("echo 1 > {output}", outputs="same.txt", name="one")
            shell("echo 2 > {output}", outputs="same.txt", name="two")

        @pipeline
        def unpicklable():
            use(threading.Lock())

        @pipeline
        def unhashable():
            use(Thing())
        '''),
    # a result too big for the database row: it goes to the CAS
    "big.py": textwrap.dedent('''
        from corral import pipeline, task

        @task
        def blob(seed: int) -> str:
            return str(seed) * 100_000

        @pipeline
        def big(seed: int = 1):
            return blob(seed)
        '''),
    # parameters named like options of corral run
    "clash.py": textwrap.dedent('''
        from corral import pipeline, task

        @task
        def show(token: str, jobs: int, cache: bool) -> str:
            return f"{token}/{jobs}/{cache}"

        @pipeline
        def clash(token: str = "none", jobs: int = 1, cache: bool = True):
            return show(token, jobs, cache)
        '''),
}


@dataclass
class Project:
    root: Path
    """Holds the pipeline files."""
    wd: Path
    """The working directory (.corral/ lives here), also the current directory."""

    def file(self, name: str) -> str:
        return str(self.root / name)


def invoke(*args: Any) -> Result:
    """``corral ARGS`` in this process."""
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def invoke_json(*args: Any, code: int = 0) -> Any:
    result = invoke(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def corral(*args: Any, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``corral ARGS`` as a real process."""
    return subprocess.run([CORRAL, *map(str, args)], cwd=cwd, capture_output=True, text=True,  # noqa: S603
                          timeout=timeout, env=_env())


def spawn(*args: Any, cwd: Path) -> subprocess.Popen[str]:
    """``corral ARGS`` started in the background."""
    return subprocess.Popen([CORRAL, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,  # noqa: S603
                            stderr=subprocess.PIPE, text=True, env=_env())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["COLUMNS"] = "80"  # the width where long messages used to wrap
    env.pop("FORCE_COLOR", None)
    return env


def one_line_error(stderr: str, *words: str) -> str:
    """The single ``error: ...`` line of ``stderr``; it must contain every word."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("error: "), lines[0]
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def wait_for(condition: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def status(run_id: str = "latest") -> dict[str, Any]:
    """``corral status RUN --json`` as {"run": row, "tasks": {name: row}}."""
    data = invoke_json("status", run_id)
    return {"run": data["run"], "tasks": {t["name"]: t for t in data["tasks"]}}


def background_run(project: Project, *args: Any) -> tuple[subprocess.Popen[str], str]:
    """Start ``corral run ARGS -q`` in the background; returns it and its run id once its
    engine runs it."""
    proc = spawn("run", *args, "-q", cwd=project.wd)

    def running() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()}")
        return _running_run(project.wd / ".corral" / "state.db")

    return proc, wait_for(running, what="the background run to start")


def _running_run(db: Path) -> str | None:
    """The newest run if its engine runs it (read directly: the engine may still be creating
    the database, and a second migration at the same moment would race with it)."""
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db, timeout=5) as c:
            row = c.execute("SELECT id, state FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row is not None and row[1] == "running" else None


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
