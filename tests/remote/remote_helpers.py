"""Helpers of the remote executor tests: hand-built specs, a recording listener, task functions
and the conformance checks every executor must pass (ssh shared, ssh staged, dask).

This module is pickled *by value* with cloudpickle, so its task functions run on workers that
cannot import the test tree.
"""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle
import psutil

from corral.executors.base import Completion, Executor, ExecutorContext, Outcome, TaskKind, TaskSpec
from corral.resources import Resources
from corral.worker.execute import PythonPayload, ShellPayload

cloudpickle.register_pickle_by_value(sys.modules[__name__])

_COUNTER = itertools.count(1)


# ---------------------------------------------------------------------------------- payloads


def python_payload(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    func = cloudpickle.dumps(fn)
    digest = f"{fn.__name__}-{len(func)}-{hash(func)}"
    return pickle.dumps(PythonPayload(digest, func, cloudpickle.dumps((args, kwargs))))


def shell_payload(command: str, outputs: list[str] | None = None) -> bytes:
    return pickle.dumps(ShellPayload(command, outputs or []))


# ---------------------------------------------------------------------------------- task functions


def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


def boom(message: str) -> None:
    raise ValueError(message)


def sleeper(seconds: float, flag: str | None = None) -> str:
    if flag:
        Path(flag).write_text("running")
    time.sleep(seconds)
    return "woke"


def suicide(signum: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), signum)


def vanish() -> None:
    """Exit the worker at once: no exit marker, no signal."""
    os._exit(3)


def hog(megabytes: int, seconds: float, pid_file: str | None = None) -> int:
    """Hold ``megabytes`` of touched memory for ``seconds``; the worker's pid in ``pid_file``."""
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    block = bytearray(megabytes * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(seconds)
    return len(block)


def make_files(files: dict[str, str], returned: Any) -> Any:
    """Write ``files`` (path -> text) in the task directory; return ``returned``."""
    for name, text in files.items():
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_text(text)
    return returned


def read_text(path: Path) -> str:
    return path.read_text()


def read_env(name: str) -> str | None:
    return os.environ.get(name)


# ---------------------------------------------------------------------------------- listener


@dataclass
class Recorder:
    """A :class:`corral.executors.base.Listener` that records what it is told."""

    submitted_ids: dict[str, str] = field(default_factory=dict)
    started_at: dict[str, tuple[float, str | None]] = field(default_factory=dict)

    def submitted(self, attempt_id: str, native_id: str) -> None:
        self.submitted_ids[attempt_id] = native_id

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        self.started_at[attempt_id] = (when, host)


# ---------------------------------------------------------------------------------- workspace


@dataclass
class Workspace:
    """A run's local directories and a factory of specs (a fresh attempt dir per attempt)."""

    root: Path
    run_id: str

    @property
    def cwd(self) -> Path:
        return self.root / "project"

    @property
    def work_root(self) -> Path:
        return self.root / "work" / self.run_id

    def context(self, max_parallel: int = 8) -> ExecutorContext:
        return ExecutorContext(self.run_id, self.work_root, self.cwd, max_parallel)

    def spec(
        self,
        payload: bytes,
        *,
        kind: TaskKind = TaskKind.PYTHON,
        resources: Resources | None = None,
        name: str = "task",
        env: dict[str, str] | None = None,
    ) -> TaskSpec:
        n = next(_COUNTER)
        attempt_id = f"{self.run_id}.{n}.1"
        workdir = self.work_root / attempt_id
        workdir.mkdir(parents=True, exist_ok=True)
        return TaskSpec(
            attempt_id=attempt_id,
            run_id=self.run_id,
            task_key=f"{n:064x}",
            name=f"{name}[{n}]",
            group=name,
            kind=kind,
            payload=payload,
            resources=resources or Resources(),
            attempt=1,
            workdir=workdir,
            cwd=self.cwd,
            env=env or {},
        )


def new_workspace(tmp: Path) -> Workspace:
    ws = Workspace(tmp, f"r{os.getpid()}x{next(_COUNTER)}")
    ws.cwd.mkdir(parents=True, exist_ok=True)
    return ws


def wait_all(
    executor: Executor,
    ids: set[str],
    timeout: float = 60.0,
    seen: dict[str, Completion] | None = None,
) -> dict[str, Completion]:
    """Poll until every attempt in ``ids`` completed; each must be reported exactly once."""
    done: dict[str, Completion] = dict(seen or {})
    deadline = time.monotonic() + timeout
    while not ids <= set(done):
        assert time.monotonic() < deadline, f"still waiting for {sorted(ids - set(done))}"
        for completion in executor.poll(1.0):
            assert completion.attempt_id not in done, f"{completion.attempt_id} reported twice"
            done[completion.attempt_id] = completion
    return done


def wait_for_file(path: Path, executor: Executor, timeout: float = 30.0) -> dict[str, Completion]:
    """Poll ``executor`` until ``path`` exists; returns completions seen meanwhile."""
    seen: dict[str, Completion] = {}
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        for c in executor.poll(0.2):
            seen[c.attempt_id] = c
    return seen


# ---------------------------------------------------------------------------------- conformance


def check_scatter(executor: Executor, ws: Workspace, rec: Recorder, n: int = 6) -> None:
    executor.start(rec)
    specs = [ws.spec(python_payload(square, i), name="square") for i in range(n)]
    executor.submit(specs)
    done = wait_all(executor, {s.attempt_id for s in specs})
    assert set(done) == {s.attempt_id for s in specs}
    for i, spec in enumerate(specs):
        c = done[spec.attempt_id]
        assert c.outcome is Outcome.SUCCEEDED, c.error
        assert c.result is not None and pickle.loads(c.result) == i * i
        assert c.metrics.started is not None and c.metrics.ended is not None
        assert c.metrics.native_id == rec.submitted_ids[spec.attempt_id]


def check_failure(executor: Executor, ws: Workspace, rec: Recorder) -> Completion:
    executor.start(rec)
    spec = ws.spec(python_payload(boom, "kaboom 42"))
    executor.submit([spec])
    c = wait_all(executor, {spec.attempt_id})[spec.attempt_id]
    assert c.outcome is Outcome.FAILED
    assert c.error is not None
    assert "Traceback" in c.error and "ValueError: kaboom 42" in c.error
    return c


def check_shell_output(executor: Executor, ws: Workspace, rec: Recorder) -> Completion:
    executor.start(rec)
    command = "echo 'hello  world' > sub/out.txt && echo said"  # Corral makes sub/
    spec = ws.spec(shell_payload(command, ["sub/out.txt"]), kind=TaskKind.SHELL)
    bad = ws.spec(shell_payload("echo nope >&2; exit 3"), kind=TaskKind.SHELL)
    missing = ws.spec(shell_payload("true", ["never.txt"]), kind=TaskKind.SHELL)
    executor.submit([spec, bad, missing])
    done = wait_all(executor, {spec.attempt_id, bad.attempt_id, missing.attempt_id})
    c = done[spec.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert (ws.cwd / "sub" / "out.txt").read_text() == "hello  world\n"
    assert (spec.workdir / "stdout.log").read_text() == "said\n"
    assert c.metrics.exit_code == 0
    assert done[bad.attempt_id].outcome is Outcome.FAILED
    assert "status 3" in (done[bad.attempt_id].error or "")
    assert (bad.workdir / "stderr.log").read_text() == "nope\n"
    assert done[missing.attempt_id].outcome is Outcome.FAILED
    assert "never.txt" in (done[missing.attempt_id].error or "")
    return c


def check_cancel(executor: Executor, ws: Workspace, rec: Recorder) -> Completion:
    executor.start(rec)
    flag = ws.root / "sleeping.flag"
    spec = ws.spec(python_payload(sleeper, 60, str(flag)))
    quick = ws.spec(python_payload(square, 7))
    started = time.monotonic()
    executor.submit([spec, quick])
    seen = wait_for_file(flag, executor)
    executor.cancel([spec.attempt_id])
    done = wait_all(executor, {spec.attempt_id, quick.attempt_id}, timeout=20, seen=seen)
    assert done[spec.attempt_id].outcome is Outcome.CANCELLED
    assert done[quick.attempt_id].outcome is Outcome.SUCCEEDED
    assert time.monotonic() - started < 30
    executor.cancel([spec.attempt_id, quick.attempt_id])  # late cancels are harmless
    assert executor.poll(0.3) == []
    return done[spec.attempt_id]


def calls_tools() -> list[int]:
    """Prints, runs commands that print, and leaves two processes running: a child, and an
    orphan in a session of its own (a daemon); returns their pids."""
    import subprocess

    print("from python print")
    subprocess.run(["echo", "from child process stdout"], check=True)
    subprocess.run(["sh", "-c", "echo from child stderr >&2"], check=True)
    os.system("echo from os.system")
    print("python again")
    child = subprocess.Popen(["sleep", "1234"])
    daemon = subprocess.Popen(["sh", "-c", "sleep 1235 >/dev/null & echo $!"],
                              stdout=subprocess.PIPE, start_new_session=True)
    orphan = int(daemon.communicate()[0])
    return [child.pid, orphan]


CHILD_STDOUT = "from python print\nfrom child process stdout\nfrom os.system\npython again\n"


def attempt_log(spec: TaskSpec, c: Completion, name: str) -> str:
    """An attempt's stdout.log or stderr.log: in its directory, or in the completion (an
    executor without a shared file system)."""
    path = spec.workdir / name
    if path.exists():
        return path.read_text()
    return (c.stdout if name == "stdout.log" else c.stderr) or ""


def check_children(executor: Executor, ws: Workspace, rec: Recorder) -> None:
    """What a task's child processes write is in its logs, in order, and what they leave
    running (a Python task's child and daemon, a shell task's background job) is gone within
    2 s of the task's end."""
    executor.start(rec)
    py = ws.spec(python_payload(calls_tools), name="calls_tools")
    sh = ws.spec(shell_payload("sleep 1236 >/dev/null & echo $!"), kind=TaskKind.SHELL)
    executor.submit([py, sh])
    done = wait_all(executor, {py.attempt_id, sh.attempt_id})
    ended = time.monotonic()
    c = done[py.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert attempt_log(py, c, "stdout.log") == CHILD_STDOUT
    assert attempt_log(py, c, "stderr.log") == "from child stderr\n"
    assert done[sh.attempt_id].outcome is Outcome.SUCCEEDED, done[sh.attempt_id].error
    assert c.result is not None
    pids = [*pickle.loads(c.result), int(attempt_log(sh, done[sh.attempt_id], "stdout.log"))]
    while not all(process_gone(pid) for pid in pids):
        assert time.monotonic() - ended < 2.0, [p for p in pids if not process_gone(p)]
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    """The process is gone or a zombie (on loopback, the remote pids are ours too)."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------------------------- whole runs

STAGED_PIPELINE = """
from pathlib import Path
from corral import pipeline, shell, task

@task
def count_words(path: Path, more: list[Path]) -> int:
    return sum(len(p.read_text().split()) for p in [path, *more])

@task
def make(text: str) -> dict[str, Path]:
    out = Path("made/x.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return {"x": out}

@task
def shout(made: dict[str, Path]) -> str:
    return made["x"].read_text().upper()

@task
def make_absolute(text: str) -> Path:
    out = Path.cwd() / "made" / "abs.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out

@task
def where(path: Path) -> tuple[str, str]:
    return str(path), path.read_text()

@pipeline
def staged():
    copy = shell("mkdir -p out && cat {input} > {output}", inputs="data/in.txt",
                 outputs="out/copy.txt", name="copy")
    upper = shell("tr a-z A-Z < {input.text} > {output}", inputs={"text": copy},
                  outputs="upper.txt", name="upper")
    made = make("made remotely")
    absolute = make_absolute("absolute remotely")
    return (count_words(Path("data/words.txt"), [Path("data/deeper/more.txt")]), upper,
            shout(made), absolute, where(absolute))
"""
"""A pipeline whose tasks read declared inputs under ``data/``, which exists only locally: a
shell task's ``inputs=``, a Python task's ``Path`` arguments (one in a list) and an upstream
shell task's output passed as a future; and a Python task's returned file (in a dict), fetched
back and read by a downstream task."""


def run_staged_pipeline(project: Path, executor: str, options: dict[str, Any]) -> Any:
    """Run :data:`STAGED_PIPELINE` in ``project`` on ``executor``; check the files came back."""
    import corral

    (project / "data" / "deeper").mkdir(parents=True, exist_ok=True)
    (project / "data" / "in.txt").write_text("staged input\n")
    (project / "data" / "words.txt").write_text("one two three\n")
    (project / "data" / "deeper" / "more.txt").write_text("four five\n")
    (project / "staged_pipe.py").write_text(STAGED_PIPELINE)
    pipe = corral.load_pipeline(project / "staged_pipe.py")
    result = corral.run(pipe, {}, executor=executor, executor_options=options, jobs=4,
                        workdir=project)
    assert result.ok, result.errors
    words, upper, shouted, absolute, (seen, text) = result.value
    assert words == 5
    # an absolute path returned on the host names the local copy here, and the downstream task
    # on the host was handed the path of the staged copy there
    assert absolute == project / "made" / "abs.txt"
    assert absolute.read_text() == "absolute remotely" == text
    assert not seen.startswith(str(project)) and seen.endswith("/made/abs.txt"), seen
    assert shouted == "MADE REMOTELY" and (project / "made" / "x.txt").read_text() == "made remotely"
    assert (project / "out" / "copy.txt").read_text() == "staged input\n"
    assert Path(upper) == Path("upper.txt")
    assert (project / "upper.txt").read_text() == "STAGED INPUT\n"
    return result

