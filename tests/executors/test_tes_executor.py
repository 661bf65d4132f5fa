"""The ``tes`` executor against a real Corral gateway acting as the remote TES 1.1 server: uvicorn
on a free loopback port, its local runner running the tasks for real, every HTTP request it
receives counted (to check that polling is batched)."""

from __future__ import annotations

import pickle
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

import corral
from corral.errors import ConfigError
from corral.executors import create_executor
from corral.executors.base import AttemptRef, Completion, Executor, ExecutorContext, Outcome, TaskKind, TaskSpec
from corral.executors.tes import parse_settings
from corral.gateway.app import create_app
from corral.gateway.settings import Settings
from corral.gateway.store import GatewayStore, default_url
from corral.resources import Resources
from corral.worker.execute import ShellPayload

from . import test_contract as contract  # its one case is run on this executor below

TOKEN_ENV = "CORRAL_TEST_TES_TOKEN"
TES = "/ga4gh/tes/v1"


@dataclass
class Remote:
    """A gateway serving TES on loopback, and the requests it received."""

    url: str
    store: GatewayStore
    token: str
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)

    def calls(self, method: str, path: str) -> list[dict[str, list[str]]]:
        return [q for m, p, q in self.requests if m == method and p == path]

    def task_gets(self) -> list[tuple[str, dict[str, list[str]]]]:
        prefix = TES + "/tasks/"
        return [(p, q) for m, p, q in self.requests if m == "GET" and p.startswith(prefix)]


class _Counting:
    """ASGI wrapper recording (method, path, query) of every HTTP request."""

    def __init__(self, app: Any, seen: list[tuple[str, str, dict[str, list[str]]]]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"], parse_qs(scope["query_string"].decode())))
        await self.app(scope, receive, send)


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           serve: Callable[[Any], AbstractContextManager[str]]) -> Iterator[Remote]:
    home = tmp_path / "gateway"
    home.mkdir()
    store = GatewayStore(default_url(home))
    store.create_project("lab", 1000.0, members=["alice"], max_concurrent_jobs=10)
    token = store.create_token("alice")
    monkeypatch.setenv(TOKEN_ENV, token)
    seen: list[tuple[str, str, dict[str, list[str]]]] = []
    app = _Counting(create_app(Settings(workdir=home, poll_seconds=0.05), store=store), seen)
    with serve(app) as url:
        yield Remote(url, store, token, seen)
    store.close()


def _options(remote: Remote, shared: bool = True, **extra: Any) -> dict[str, Any]:
    return {"url": remote.url, "token_env": TOKEN_ENV, "shared_filesystem": shared, "python": sys.executable,
            "poll_interval": 0.5, **extra}


def _load(root: Path, source: str) -> Any:
    path = root / f"pipe_{time.monotonic_ns()}.py"
    path.write_text(textwrap.dedent(source))
    return corral.load_pipeline(path)


def _workdir(tmp_path: Path) -> Path:
    wd = tmp_path / "wd"
    wd.mkdir(exist_ok=True)
    return wd


WORDS = '''
    from pathlib import Path
    from corral import pipeline, shell, task

    @task
    def count(path: Path) -> int:
        return len(path.read_text().split())

    @pipeline
    def words():
        a = shell("echo alpha one > {output}", outputs="a.txt")
        b = shell("printf '%s\\\\n' beta two three > {output}", outputs="out/b.txt")
        both = shell("cat {input.a} {input.b} > {output}", inputs={"a": a, "b": b}, outputs="both.txt")
        return both, count(both)
'''


def test_a_pipeline_runs_on_the_remote_and_polling_is_batched(remote: Remote, tmp_path: Path) -> None:
    wd = _workdir(tmp_path)
    r = corral.run(_load(tmp_path, WORDS), executor="tes", executor_options=_options(remote), jobs=4, workdir=wd)
    assert r.ok, r.errors
    both, n = r.value
    assert (wd / "both.txt").read_text() == "alpha one\nbeta\ntwo\nthree\n" and n == 5
    assert Path(both) == Path("both.txt")
    # four TES tasks, each tagged with the run; the remote ran them (its jobs completed)
    assert len(remote.calls("POST", TES + "/tasks")) == 4
    jobs, _ = remote.store.list_jobs(None, limit=10, offset=0)
    assert len(jobs) == 4 and {j["state"] for j in jobs} == {"completed"}
    # status by batched list calls (MINIMAL, filtered by the run's tag); one FULL read per ended task
    lists = remote.calls("GET", TES + "/tasks")[1:]  # the first: start()'s token check
    assert lists and all(q["view"] == ["MINIMAL"] and q["tag_key"] == ["corral_run"]
                         and q["tag_value"] == [r.run_id] for q in lists)
    gets = remote.task_gets()
    assert len(gets) == 4 and all(q["view"] == ["FULL"] for _, q in gets)


def test_a_failing_task_fails_the_run_with_its_stderr(remote: Remote, tmp_path: Path) -> None:
    pipe = _load(tmp_path, '''
        from corral import pipeline, shell

        @pipeline
        def broken():
            return shell("echo about to fail; echo 'no such sample: s42' >&2; exit 3", outputs="never.txt")
    ''')
    wd = _workdir(tmp_path)
    r = corral.run(pipe, executor="tes", executor_options=_options(remote), workdir=wd)
    assert not r.ok
    assert len(r.errors) == 1 and "no such sample: s42" in r.errors[0] and "status 3" in r.errors[0], r.errors
    [stderr] = list((wd / ".corral").rglob("stderr.log"))
    assert stderr.read_text() == "no such sample: s42\n"


def test_cancelling_a_run_cancels_its_tes_tasks(remote: Remote, tmp_path: Path) -> None:
    pipe = _load(tmp_path, '''
        from corral import pipeline, shell

        @pipeline
        def slow():
            return shell("sleep 60; echo late > {output}", outputs="late.txt")
    ''')
    began = time.monotonic()
    handle = corral.start(pipe, executor="tes", executor_options=_options(remote), workdir=_workdir(tmp_path))
    deadline = time.monotonic() + 20
    while not any(j["state"] == "running" for j in remote.store.list_jobs(None, limit=5, offset=0)[0]):
        assert time.monotonic() < deadline, "the TES task never started"
        time.sleep(0.1)
    handle.cancel()
    assert handle.wait(30) is corral.RunState.CANCELLED
    assert time.monotonic() - began < 30
    [job] = remote.store.list_jobs(None, limit=5, offset=0)[0]
    assert job["state"] == "cancelled"
    assert len(remote.calls("POST", f"{TES}/tasks/{job['id']}:cancel")) == 1
    assert not (tmp_path / "wd" / "late.txt").exists()


ECHO = '''
    from corral import pipeline, shell, task

    @task
    def double(x: int) -> int:
        return 2 * x

    @pipeline
    def echo(python: bool = False):
        return double(21) if python else shell("echo hi")
'''


@pytest.mark.parametrize("case", ["bad token", "no token", "closed port", "not a TES server"])
def test_bad_url_or_token_is_one_line_before_anything_is_submitted(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
) -> None:
    options = _options(remote)
    if case == "bad token":
        monkeypatch.setenv(TOKEN_ENV, "not-the-token")
        expected = f"refused the token (HTTP 401); check the environment variable {TOKEN_ENV}"
    elif case == "no token":
        monkeypatch.delenv(TOKEN_ENV)
        expected = f"the environment variable {TOKEN_ENV} (tes option token_env) is not set or empty"
    elif case == "closed port":
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            options["url"] = f"http://127.0.0.1:{sock.getsockname()[1]}"
        expected = "cannot reach the TES server at"
    else:
        options["url"] = remote.url + "/elsewhere"
        expected = "GET /service-info answered HTTP 404"
    with pytest.raises(corral.CorralError) as info:
        r = corral.run(_load(tmp_path, ECHO), executor="tes", executor_options=options, workdir=_workdir(tmp_path))
        pytest.fail(f"the run went on: {r.state} {r.errors}")
    message = str(info.value)
    assert expected in message and "\n" not in message, message
    assert not remote.calls("POST", TES + "/tasks")


def test_python_tasks_need_a_shared_file_system(remote: Remote, tmp_path: Path) -> None:
    wd = _workdir(tmp_path)
    options = _options(remote, shared=False)
    with pytest.raises(ConfigError, match="is a Python task: the tes executor runs Python tasks only with "
                                          "shared_filesystem = true"):
        corral.run(_load(tmp_path, ECHO), {"python": True}, executor="tes", executor_options=options, workdir=wd)
    assert not remote.calls("POST", TES + "/tasks")
    assert corral.runs(wd)[0]["state"] == corral.RunState.INTERRUPTED  # resumable once the profile is fixed
    # a shell task that reads and writes no file runs without one; its output is in its log
    r = corral.run(_load(tmp_path, ECHO), executor="tes", executor_options=options, workdir=wd)
    assert r.ok, r.errors
    [stdout] = list((wd / ".corral").rglob("stdout.log"))
    assert stdout.read_text() == "hi\n"


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "http://127.0.0.1:1", "token": "s3cret"}, "never write the token in the configuration"),
    ({"url": "ftp://127.0.0.1"}, "must be http(s)://host[:port][/path]"),
    ({"url": "http://127.0.0.1:1", "token_env": "A", "token_file": "b"}, "token_env and token_file are exclusive"),
    ({"url": "http://127.0.0.1:1", "max_jobs": 0}, "max_jobs=0 must be a positive integer"),
    ({"url": "http://127.0.0.1:1", "pol_interval": 1}, "unknown tes executor option(s) pol_interval"),
    ({}, 'the tes executor needs url = "https://tes.example.org"'),
])
def test_bad_profiles_are_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(options)
    assert message in str(info.value) and "\n" not in str(info.value)


def _cli(wd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(Path(sys.executable).parent / "corral"), "run", "pipe.py", "--executor", "remote", "-q", *args]
    return subprocess.run(argv, cwd=wd, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603


def test_cli_runs_with_a_tes_profile_in_corral_toml(remote: Remote, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    wd = _workdir(tmp_path)
    (wd / "corral.toml").write_text(textwrap.dedent(f'''
        [executors.remote]
        kind = "tes"
        url = "{remote.url}/ga4gh/tes/v1"
        token_env = "{TOKEN_ENV}"
        shared_filesystem = true
        poll_interval = 0.5
        max_jobs = 2
    '''))
    (wd / "pipe.py").write_text(textwrap.dedent('''
        from corral import pipeline, shell

        @pipeline
        def hello(who: str = "world"):
            return shell("echo hello {params.who} > {output}", outputs="hello.txt", params={"who": who})
    '''))
    done = _cli(wd, "--who", "a b; c")
    assert done.returncode == 0, done.stderr
    assert (wd / "hello.txt").read_text() == "hello a b; c\n"
    assert len(remote.calls("POST", TES + "/tasks")) == 1
    monkeypatch.setenv(TOKEN_ENV, "wrong")
    done = _cli(wd, "--who", "x", "--new")
    assert done.returncode != 0 and len(remote.calls("POST", TES + "/tasks")) == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refused the token (HTTP 401)" in lines[0], done.stderr


def test_a_busy_server_is_retried_until_it_takes_the_tasks(remote: Remote, tmp_path: Path) -> None:
    """The gateway answers 429 while its project runs its one allowed job: creations wait."""
    remote.store.create_project("solo", 1000.0, members=["alice"], max_concurrent_jobs=1)
    pipe = _load(tmp_path, '''
        from corral import pipeline, shell

        @pipeline
        def three():
            return [shell("sleep 0.3; echo {params.i} > {output}", outputs=f"n{i}.txt", params={"i": i})
                    for i in range(3)]
    ''')
    wd = _workdir(tmp_path)
    r = corral.run(pipe, executor="tes", executor_options=_options(remote, tags={"project": "solo"}, max_jobs=3),
                   workdir=wd, jobs=3)
    assert r.ok, r.errors
    assert [(wd / f"n{i}.txt").read_text() for i in range(3)] == ["0\n", "1\n", "2\n"]
    assert len(remote.calls("POST", TES + "/tasks")) > 3  # some creations were refused, then retried
    jobs, _ = remote.store.list_jobs(None, limit=10, offset=0)
    assert sorted(j["state"] for j in jobs) == ["completed"] * 3


class _Listener:
    def __init__(self) -> None:
        self.native: dict[str, str] = {}

    def submitted(self, attempt_id: str, native_id: str) -> None:
        self.native[attempt_id] = native_id

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        return None


def _spec(tmp_path: Path, n: int, command: str, outputs: list[str]) -> TaskSpec:
    wd = _workdir(tmp_path)
    return TaskSpec(attempt_id=f"r1.{n}.1", run_id="r1", task_key=f"k{n}", name=f"t{n}", group="t",
                    kind=TaskKind.SHELL, payload=pickle.dumps(ShellPayload(command, outputs)),
                    resources=Resources(), attempt=1, workdir=tmp_path / "work" / f"r1.{n}.1", cwd=wd)


def _until_done(executor: Executor, seconds: float = 20) -> list[Completion]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done = executor.poll(0.2)
        if done:
            return done
    raise AssertionError("no completion")


def test_a_new_engine_reattaches_and_corral_cancel_reaches_orphans(remote: Remote, tmp_path: Path) -> None:
    ctx = ExecutorContext(run_id="r1", work_root=tmp_path / "work", cwd=_workdir(tmp_path), max_parallel=2)
    first, listener = create_executor("tes", _options(remote), ctx), _Listener()
    first.start(listener)
    spec = _spec(tmp_path, 0, "sleep 1; echo done > done.txt", ["done.txt"])
    orphan = _spec(tmp_path, 1, "sleep 60", [])
    first.submit([spec, orphan])
    first.shutdown()  # the engine is gone; its tasks go on on the server
    second = create_executor("tes", _options(remote), ctx)
    second.start(_Listener())
    refs = [AttemptRef(s.attempt_id, listener.native[s.attempt_id], s.workdir, time.time()) for s in (spec, orphan)]
    assert second.reattach(refs[:1]) == [spec.attempt_id]
    [comp] = _until_done(second)
    assert comp.attempt_id == spec.attempt_id and comp.outcome is Outcome.SUCCEEDED
    assert (ctx.cwd / "done.txt").read_text() == "done\n"
    create_executor("tes", _options(remote), ctx).cancel_native(refs[1:])  # `corral cancel`: not started
    deadline = time.monotonic() + 20
    while remote.store.job_state(refs[1].native_id) != "cancelled":
        assert time.monotonic() < deadline, "the orphan was not cancelled"
        time.sleep(0.1)


def test_a_task_over_its_walltime_is_a_timeout(remote: Remote, tmp_path: Path) -> None:
    pipe = _load(tmp_path, '''
        from corral import Resources, pipeline, shell

        @pipeline
        def long():
            return shell("sleep 30", resources=Resources(walltime=2))
    ''')
    began = time.monotonic()
    r = corral.run(pipe, executor="tes", executor_options=_options(remote), workdir=_workdir(tmp_path))
    assert not r.ok and time.monotonic() - began < 20
    assert len(r.errors) == 1 and "timeout: killed after exceeding its walltime of" in r.errors[0], r.errors


def test_the_executor_contract_holds(remote: Remote, tmp_path: Path) -> None:
    """The contract suite's scenario (tests/executors/test_contract.py), run on the tes executor
    with a shared file system: every attempt reported exactly once, with the right outcome."""
    project = tmp_path / "project"
    project.mkdir()
    ctx = ExecutorContext("c1", tmp_path / "work" / "c1", project, 16, sys.executable)
    executor = create_executor("tes", _options(remote), ctx)
    try:
        contract.test_every_attempt_is_reported_exactly_once("tes", lambda kind: executor, tmp_path)
    finally:
        executor.shutdown()
