"""The ssh executor against the loopback sshd: conformance (shared and staged), re-attach, LOST,
walltime, slots, staging of inputs, batched status queries, and option validation."""

from __future__ import annotations

import getpass
import json
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from remote_helpers import (
    Recorder,
    Workspace,
    boom,
    check_cancel,
    check_children,
    check_failure,
    check_scatter,
    check_shell_output,
    hog,
    make_files,
    process_gone,
    python_payload,
    read_env,
    read_text,
    run_staged_pipeline,
    shell_payload,
    sleeper,
    square,
    suicide,
    vanish,
    wait_all,
    wait_for_file,
)

from conftest import SSHRig
from corral.errors import ConfigError, ResourceError
from corral.executors import create_executor
from corral.executors.base import AttemptRef, ExecutorContext, Outcome, TaskKind
from corral.executors.ssh import SSHExecutor, parse_answer, split_native_id
from corral.resources import Resources
from corral.transport.ssh import SSHTransport

pytestmark = pytest.mark.ssh

Factory = Callable[..., SSHExecutor]


@pytest.fixture
def make_executor(ssh_rig: SSHRig, workspace: Workspace) -> Iterator[Factory]:
    """Build ssh executors on the rig; ``shared=False`` stages to a separate remote_workdir."""
    made: list[SSHExecutor] = []

    def make(shared: bool = True, **extra: Any) -> SSHExecutor:
        options: dict[str, Any] = {
            "hosts": [ssh_rig.url],
            "python": sys.executable,
            "shared_filesystem": shared,
            "remote_workdir": str(workspace.root / "remote"),
            "slots_per_host": 4,
            "poll_interval": 0.5,
            "kill_grace": 1.0,
            **ssh_rig.options,
            **extra,
        }
        executor = create_executor("ssh", options, workspace.context())
        assert isinstance(executor, SSHExecutor)
        made.append(executor)
        return executor

    yield make
    for executor in made:
        executor.cancel(list(executor._running))  # a failed test leaves no sleeping worker
        executor.shutdown()


MODES = [pytest.param(True, id="shared"), pytest.param(False, id="staged")]


# ---------------------------------------------------------------------------------- conformance


@pytest.mark.parametrize("shared", MODES)
def test_scatter(make_executor: Factory, workspace: Workspace, recorder: Recorder, shared: bool) -> None:
    check_scatter(make_executor(shared), workspace, recorder)
    host, pid = split_native_id(next(iter(recorder.submitted_ids.values())))
    assert host.endswith("@127.0.0.1:" + host.rsplit(":", 1)[1]) and pid
    assert len(recorder.started_at) == 6


@pytest.mark.parametrize("shared", MODES)
def test_child_processes_log_and_end(
    make_executor: Factory, workspace: Workspace, recorder: Recorder, shared: bool
) -> None:
    check_children(make_executor(shared), workspace, recorder)


@pytest.mark.parametrize("shared", MODES)
def test_failure(make_executor: Factory, workspace: Workspace, recorder: Recorder, shared: bool) -> None:
    c = check_failure(make_executor(shared), workspace, recorder)
    assert c.result is None


@pytest.mark.parametrize("shared", MODES)
def test_shell_output(make_executor: Factory, workspace: Workspace, recorder: Recorder, shared: bool) -> None:
    check_shell_output(make_executor(shared), workspace, recorder)


def test_shell_tasks_do_not_run_the_login_files_again(
    make_executor: Factory, workspace: Workspace, recorder: Recorder
) -> None:
    """bash sources ~/.bashrc when SSH_CLIENT is set and it is the top shell, which a task's
    ``bash -c`` is (sshd's shell execs the helper): the host's start-up messages (pyenv's rehash
    warning, in CI) landed in the task's stderr.log. The task keeps the login environment."""
    executor = make_executor(False)
    executor.start(recorder)
    command = 'echo "[${SSH_CLIENT-}${SSH2_CLIENT-}] $HOME"; echo err >&2'
    spec = workspace.spec(shell_payload(command), kind=TaskKind.SHELL)
    executor.submit([spec])
    assert wait_all(executor, {spec.attempt_id})[spec.attempt_id].outcome is Outcome.SUCCEEDED
    out = read_text(spec.workdir / "stdout.log")
    assert out.startswith("[] /") and out.count("\n") == 1, out  # no SSH_CLIENT; HOME is there
    assert read_text(spec.workdir / "stderr.log") == "err\n"


@pytest.mark.parametrize("shared", MODES)
def test_cancel(make_executor: Factory, workspace: Workspace, recorder: Recorder, shared: bool) -> None:
    executor = make_executor(shared)
    check_cancel(executor, workspace, recorder)
    assert executor.capacity() == 4


# ---------------------------------------------------------------------------------- staging


def test_staging_is_real(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    """Without a shared file system the attempt runs in remote_workdir, inputs go there and
    results, logs and outputs come back (remote directories kept to look at them)."""
    executor = make_executor(shared=False, remote_cleanup="none")
    executor.start(recorder)
    (workspace.cwd / "data").mkdir()
    (workspace.cwd / "data" / "in.txt").write_text("staged input\n")
    spec = workspace.spec(
        shell_payload("cat data/in.txt > out.txt; pwd > where.txt; pwd", ["out.txt", "where.txt"]),
        kind=TaskKind.SHELL,
    )
    spec.inputs = ["data/in.txt"]
    py = workspace.spec(python_payload(square, 9))
    executor.submit([spec, py])
    done = wait_all(executor, {spec.attempt_id, py.attempt_id})
    assert done[spec.attempt_id].outcome is Outcome.SUCCEEDED, done[spec.attempt_id].error
    remote_run = workspace.root / "remote" / workspace.run_id
    assert (workspace.cwd / "out.txt").read_text() == "staged input\n"
    assert (workspace.cwd / "where.txt").read_text().strip() == str(remote_run / "cwd")
    assert (spec.workdir / "stdout.log").read_text().strip() == str(remote_run / "cwd")
    assert (remote_run / spec.attempt_id / "payload.pkl").read_bytes() == spec.payload
    assert (remote_run / "cwd" / "data" / "in.txt").exists()
    for name in ("exit.json", "started.json", "stdout.log", "stderr.log"):
        assert (spec.workdir / name).exists(), name  # fetched back
    assert pickle.loads(done[py.attempt_id].result or b"") == 81
    assert (py.workdir / "result.pkl").exists() and (py.workdir / "stdout.log").read_text() == ("squaring 9\n")


def test_a_run_stages_the_tasks_input_files(ssh_rig: SSHRig, tmp_path: Path) -> None:
    """Through the engine, on a host without the pipeline directory: declared shell inputs,
    Path arguments of a Python task and an upstream output reach the remote task directory
    (where ``data/`` does not exist), and outputs come back."""
    project = tmp_path / "project"
    project.mkdir()
    options = {"hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": False,
               "remote_workdir": str(tmp_path / "remote"), "poll_interval": 0.5, **ssh_rig.options}
    run_staged_pipeline(project, "ssh", options)


@pytest.mark.parametrize("cleanup", ["succeeded", "all", "none"])
def test_remote_cleanup(make_executor: Factory, workspace: Workspace, recorder: Recorder, cleanup: str) -> None:
    """Staged attempt directories are removed once fetched back per remote_cleanup (default
    succeeded: failures kept), and the run's directory at shutdown unless something was kept."""
    executor = make_executor(shared=False, **({} if cleanup == "succeeded" else {"remote_cleanup": cleanup}))
    executor.start(recorder)
    (workspace.cwd / "in.txt").write_text("in\n")
    ok = workspace.spec(python_payload(square, 4))
    copy = workspace.spec(shell_payload("cp in.txt out.txt", ["out.txt"]), kind=TaskKind.SHELL)
    copy.inputs = ["in.txt"]
    bad = workspace.spec(python_payload(boom, "kept for inspection"))
    lost = workspace.spec(python_payload(vanish))
    executor.submit([ok, copy, bad, lost])
    done = wait_all(executor, {ok.attempt_id, copy.attempt_id, bad.attempt_id, lost.attempt_id})
    assert [done[s.attempt_id].outcome for s in (ok, copy, bad, lost)] == [
        Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.FAILED, Outcome.LOST]
    assert pickle.loads(done[ok.attempt_id].result or b"") == 16
    assert (workspace.cwd / "out.txt").read_text() == "in\n"
    # everything the engine shows came back before anything was removed
    assert "ValueError: kept for inspection" in (bad.workdir / "stderr.log").read_text()
    assert (ok.workdir / "stdout.log").read_text() == "squaring 4\n"
    run_dir = workspace.root / "remote" / workspace.run_id
    left = {p.name for p in run_dir.iterdir()}
    expected = {"succeeded": {"cwd", bad.attempt_id, lost.attempt_id}, "all": {"cwd"},
                "none": {"cwd", ok.attempt_id, copy.attempt_id, bad.attempt_id, lost.attempt_id}}
    assert left == expected[cleanup]
    if cleanup == "succeeded":  # what a rerun by hand needs is still there
        assert {"payload.pkl", "exit.json", "stderr.log"} <= {p.name for p in (run_dir / bad.attempt_id).iterdir()}
    executor.shutdown()
    assert run_dir.exists() is (cleanup != "all")  # kept: a failure is there, or nothing is removed


def test_run_dir_is_removed_after_successes(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor(shared=False)
    executor.start(recorder)
    specs = [workspace.spec(python_payload(square, i)) for i in range(3)]
    executor.submit(specs)
    done = wait_all(executor, {s.attempt_id for s in specs})
    assert all(c.outcome is Outcome.SUCCEEDED for c in done.values())
    run_dir = workspace.root / "remote" / workspace.run_id
    assert {p.name for p in run_dir.iterdir()} == {"cwd"}
    executor.shutdown()
    assert not run_dir.exists()
    assert (workspace.root / "remote").is_dir()  # remote_workdir itself stays


def test_env_is_passed(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor(shared=False)
    executor.start(recorder)
    value = "a 'b' $(c) \"d\""
    spec = workspace.spec(python_payload(read_env, "CORRAL_T"), env={"CORRAL_T": value})
    executor.submit([spec])
    c = wait_all(executor, {spec.attempt_id})[spec.attempt_id]
    assert pickle.loads(c.result or b"") == value


# ---------------------------------------------------------------------------------- failures


def test_vanished_worker_is_lost(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    """A worker that exits without an exit marker is LOST; one killed by a signal other than
    kill's (a crash) FAILED; one killed by SIGKILL, even its own, looks like an external kill."""
    executor = make_executor(shared=False)
    executor.start(recorder)
    lost = workspace.spec(python_payload(vanish))
    crash = workspace.spec(python_payload(suicide, signal.SIGUSR1))
    killed = workspace.spec(python_payload(suicide))
    executor.submit([lost, crash, killed])
    done = wait_all(executor, {lost.attempt_id, crash.attempt_id, killed.attempt_id})
    c = done[lost.attempt_id]
    assert c.outcome is Outcome.LOST
    assert "exited with status 3 without writing an exit marker" in (c.error or "")
    assert c.metrics.native_id == recorder.submitted_ids[lost.attempt_id]
    c = done[crash.attempt_id]
    assert c.outcome is Outcome.FAILED and "crashed, killed by SIGUSR1" in (c.error or "")
    assert c.metrics.exit_code == -signal.SIGUSR1
    assert done[killed.attempt_id].outcome is Outcome.CANCELLED


@pytest.mark.parametrize("kind", [TaskKind.PYTHON, TaskKind.SHELL])
def test_external_kill_is_cancelled(
    make_executor: Factory, ssh_rig: SSHRig, workspace: Workspace, recorder: Recorder, kind: TaskKind
) -> None:
    """``kill -9`` of the worker's process group on the host, outside Corral (the analogue of an
    external scancel/qdel): reported CANCELLED with the native id at the next status check."""
    executor = make_executor(shared=False)
    executor.start(recorder)
    flag = workspace.root / "running.flag"
    if kind is TaskKind.SHELL:
        spec = workspace.spec(shell_payload(f"touch {flag} && sleep 60 && echo late"), kind=kind)
    else:
        spec = workspace.spec(python_payload(sleeper, 60, str(flag)))
    executor.submit([spec])
    wait_for_file(flag, executor)
    native = recorder.submitted_ids[spec.attempt_id]
    pid = split_native_id(native)[1]
    assert pid is not None
    group = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == pid]  # loopback: our pids
    assert len(group) >= (3 if kind is TaskKind.SHELL else 1)  # worker, bash, sleep
    host = SSHTransport.from_url(ssh_rig.url, ssh_rig.options)
    try:
        host.run(["kill", "-9", "--", f"-{pid}"], timeout=20)
    finally:
        host.close()
    killed = time.monotonic()
    c = wait_all(executor, {spec.attempt_id}, timeout=20)[spec.attempt_id]
    assert time.monotonic() - killed < 5
    assert c.outcome is Outcome.CANCELLED, c.error
    assert c.error and native in c.error and "killed by SIGKILL from outside Corral" in c.error
    assert c.metrics.exit_code == -9 and c.metrics.native_id == native
    assert all(process_gone(p) for p in group)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_walltime_is_enforced(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor()
    executor.start(recorder)
    spec = workspace.spec(python_payload(sleeper, 60), resources=Resources(walltime=1))
    t0 = time.monotonic()
    executor.submit([spec])
    c = wait_all(executor, {spec.attempt_id}, timeout=20)[spec.attempt_id]
    assert c.outcome is Outcome.TIMEOUT and "walltime" in (c.error or "")
    assert time.monotonic() - t0 < 10


def test_slots_are_respected(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    executor = make_executor(slots_per_host=2)
    executor.start(recorder)
    assert executor.capacity() == 2
    specs = [workspace.spec(python_payload(sleeper, 0.6)) for _ in range(4)]
    executor.submit(specs)
    assert executor.capacity() == 0
    done = wait_all(executor, {s.attempt_id for s in specs})
    spans = sorted((c.metrics.started or 0, c.metrics.ended or 0) for c in done.values())
    for i, (start, _) in enumerate(spans):
        running = sum(1 for s, e in spans[: i + 1] if e > start)
        assert running <= 2, spans
    assert executor.capacity() == 2
    with pytest.raises(ResourceError, match="slots"):
        executor.validate(Resources(cores=3))
    with pytest.raises(ResourceError, match="nodes"):
        executor.validate(Resources(nodes=2))


def test_two_hosts_share_the_work(
    make_executor: Factory, ssh_rig: SSHRig, workspace: Workspace, recorder: Recorder
) -> None:
    """Two host entries (the same loopback sshd, with and without the user) are two hosts."""
    if getpass.getuser() != ssh_rig.user:
        pytest.skip("the second spelling logs in as the local user, who is not the rig's user")
    other = f"ssh://127.0.0.1:{ssh_rig.port}?connect_timeout=10"
    executor = make_executor(shared=False, hosts=[ssh_rig.url, other], slots_per_host=2)
    executor.start(recorder)
    assert executor.capacity() == 4
    specs = [workspace.spec(python_payload(sleeper, 0.5)) for _ in range(4)]
    executor.submit(specs)
    done = wait_all(executor, {s.attempt_id for s in specs})
    assert all(c.outcome is Outcome.SUCCEEDED for c in done.values())
    hosts = {split_native_id(n)[0] for n in recorder.submitted_ids.values()}
    assert hosts == {f"{ssh_rig.user}@127.0.0.1:{ssh_rig.port}", f"127.0.0.1:{ssh_rig.port}"}


def test_status_is_batched(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    """One launch command per host and submit; one status command per host and interval."""
    executor = make_executor(shared=False)
    calls: list[tuple[str, int]] = []
    helper = executor._helper

    def counting(host: Any, action: str, items: list[dict[str, Any]], timeout: float = 60.0) -> Any:
        calls.append((action, len(items)))
        return helper(host, action, items, timeout)

    executor._helper = counting  # type: ignore[method-assign]
    executor.start(recorder)
    specs = [workspace.spec(python_payload(sleeper, 0.5)) for _ in range(4)]
    executor.submit(specs)
    wait_all(executor, {s.attempt_id for s in specs})
    assert [c for c in calls if c[0] == "launch"] == [("launch", 4)]
    status = [n for action, n in calls if action == "status"]
    assert status and max(status) == 4
    assert len(status) < 15  # back-off, not a tight loop


# ---------------------------------------------------------------------------------- re-attach


def test_reattach_takes_over_running_task(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    first = make_executor(shared=False)
    first.start(recorder)
    flag = workspace.root / "remote" / "flag"
    spec = workspace.spec(python_payload(sleeper, 2.5, str(flag)))
    gone = workspace.spec(python_payload(square, 1))
    first.submit([spec])
    wait_for_file(flag, first)
    first.shutdown()  # the engine goes away; the remote worker keeps running

    second = make_executor(shared=False)
    second.start(Recorder())
    native = recorder.submitted_ids[spec.attempt_id]
    host, _ = split_native_id(native)
    refs = [
        AttemptRef(spec.attempt_id, native, spec.workdir, time.time()),
        AttemptRef(gone.attempt_id, f"{host}:999999", gone.workdir, None),  # never ran
        AttemptRef("x.1.1", "nohost:1", workspace.work_root / "x", None),  # unknown host
    ]
    assert second.reattach(refs) == [spec.attempt_id]
    c = wait_all(second, {spec.attempt_id}, timeout=20)[spec.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert pickle.loads(c.result or b"") == "woke"
    assert c.metrics.native_id == native


def test_cancel_native_kills_orphans(make_executor: Factory, workspace: Workspace, recorder: Recorder) -> None:
    first = make_executor()
    first.start(recorder)
    flag = workspace.root / "flag"
    spec = workspace.spec(python_payload(sleeper, 60, str(flag)))
    first.submit([spec])
    wait_for_file(flag, first)
    first.shutdown()
    native = recorder.submitted_ids[spec.attempt_id]
    pid = split_native_id(native)[1]
    assert pid is not None and psutil.pid_exists(pid)  # loopback: the remote pid is ours too
    make_executor().cancel_native([AttemptRef(spec.attempt_id, native, spec.workdir, None)])
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the orphaned worker still runs"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------- options


def test_options_are_validated(tmp_path: Path) -> None:
    ctx = ExecutorContext("r", tmp_path, tmp_path, 4)
    with pytest.raises(ConfigError) as err:
        SSHExecutor.from_options({"hosts": ["h"], "slots": 2}, ctx)
    message = str(err.value)
    assert "unknown ssh executor option(s) slots" in message and "slots_per_host" in message
    with pytest.raises(ConfigError, match="needs hosts"):
        SSHExecutor.from_options({}, ctx)
    with pytest.raises(ConfigError, match="positive integer"):
        SSHExecutor.from_options({"hosts": ["h"], "slots_per_host": 0}, ctx)
    with pytest.raises(ConfigError, match="known_hosts"):
        SSHExecutor.from_options({"hosts": ["h"], "known_hosts": 3}, ctx)
    ok = SSHExecutor.from_options({"hosts": "ssh://u@h:2", "known_hosts": "none"}, ctx)
    assert ok.settings.hosts == ("ssh://u@h:2",) and ok.settings.known_hosts is None
    assert ok.settings.shared_filesystem is False
    with pytest.raises(ConfigError, match="remote_cleanup='sometimes' is not one of succeeded, all, none"):
        SSHExecutor.from_options({"hosts": ["h"], "remote_cleanup": "sometimes"}, ctx)
    assert SSHExecutor.from_options({"hosts": ["h"], "remote_cleanup": "all"}, ctx).settings.remote_cleanup == "all"
    with pytest.raises(ConfigError, match="listed twice"):
        SSHExecutor.from_options({"hosts": ["u@h", "ssh://u@h:22"]}, ctx)._make_hosts()


def test_helper_answer_parsing() -> None:
    noisy = "Welcome to the cluster!\n" + "CORRAL-JSON:" + json.dumps({"a": {"pid": 3}}) + "\n"
    assert parse_answer(noisy) == {"a": {"pid": 3}}
    with pytest.raises(ValueError):
        parse_answer("no answer")
    assert split_native_id("root@127.0.0.1:2222:4242") == ("root@127.0.0.1:2222", 4242)


# ---------------------------------------------------------------------------------- memory


@pytest.mark.parametrize("shared", MODES)
def test_memory_is_enforced(make_executor: Factory, workspace: Workspace, recorder: Recorder, shared: bool) -> None:
    """A tree over its memory request is killed by the status command: OUT_OF_MEMORY, with the
    request and the fix in one line, and no process left; under a larger request it succeeds."""
    executor = make_executor(shared)
    executor.start(recorder)
    pid_file = workspace.root / "hog.pid"
    over = workspace.spec(python_payload(hog, 400, 60, str(pid_file)), resources=Resources(memory="150M"))
    under = workspace.spec(python_payload(hog, 400, 1), resources=Resources(memory="1G"))
    t0 = time.monotonic()
    executor.submit([over, under])
    done = wait_all(executor, {over.attempt_id, under.attempt_id}, timeout=30)
    c = done[over.attempt_id]
    assert c.outcome is Outcome.OUT_OF_MEMORY, c.error
    assert time.monotonic() - t0 < 15
    assert c.error and "\n" not in c.error
    assert "over its memory request of 150 MiB" in c.error and "Resources(memory=...)" in c.error
    assert (c.metrics.peak_rss or 0) > 150 * 2**20
    worker = split_native_id(recorder.submitted_ids[over.attempt_id])[1]
    assert worker is not None and process_gone(worker) and process_gone(int(pid_file.read_text()))
    ok = done[under.attempt_id]
    assert ok.outcome is Outcome.SUCCEEDED, ok.error
    assert pickle.loads(ok.result or b"") == 400 * 2**20


# ---------------------------------------------------------------------------------- returned files


def test_returned_files_come_back(
    make_executor: Factory, workspace: Workspace, recorder: Recorder, tmp_path: Path
) -> None:
    """Without a shared file system the files a Python task returns (a Path; Paths in a list and
    a dict) are fetched into the same relative place locally before the completion is
    reported, and a task on another host (another remote_workdir) that gets one as an argument
    has it staged; a returned file outside the remote task directory fails with one line."""
    executor = make_executor(shared=False)
    executor.start(recorder)
    one = workspace.spec(python_payload(make_files, {"out/x.txt": "made remotely\n"}, Path("out/x.txt")))
    files = {"a/1.txt": "one", "b/2.txt": "two"}
    many = workspace.spec(python_payload(make_files, files, [Path("a/1.txt"), {"k": Path("b/2.txt")}]))
    outside = tmp_path / "elsewhere.txt"
    bad = workspace.spec(python_payload(make_files, {str(outside): "x"}, outside))
    executor.submit([one, many, bad])
    done = wait_all(executor, {one.attempt_id, many.attempt_id, bad.attempt_id})
    assert done[one.attempt_id].outcome is Outcome.SUCCEEDED, done[one.attempt_id].error
    assert (workspace.cwd / "out" / "x.txt").read_text() == "made remotely\n"
    assert done[many.attempt_id].outcome is Outcome.SUCCEEDED, done[many.attempt_id].error
    assert {n: (workspace.cwd / n).read_text() for n in files} == files
    c = done[bad.attempt_id]
    assert c.outcome is Outcome.FAILED and c.result is None and c.error and "\n" not in c.error
    assert f"returned the file {outside}, outside its remote task directory" in c.error
    assert "return a path relative to the task's directory" in c.error

    other = make_executor(shared=False, remote_workdir=str(tmp_path / "other-host"))
    other.start(Recorder())
    reader = workspace.spec(python_payload(read_text, Path("out/x.txt")))
    assert reader.inputs == []  # as the engine leaves it for a value only known at run time
    other.submit([reader])
    c = wait_all(other, {reader.attempt_id})[reader.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    assert pickle.loads(c.result or b"") == "made remotely\n"
