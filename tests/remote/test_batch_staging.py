"""A batch executor over SSH *without* a shared work directory: attempt directories are staged
under ``remote_workdir`` on the login node's side, fetched back when the attempt ends, and then
removed per ``remote_cleanup``.

The "remote" side is the loopback sshd, so the test can look at both sides; the remote work root
(``<tmp>/remote``) is a different directory from the local one (``<tmp>/work``), as it would be on
another machine. Runs on Grid Engine and SLURM (each skipped when it does not answer over SSH).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from remote_helpers import (
    Recorder,
    Workspace,
    boom,
    new_workspace,
    python_payload,
    run_staged_pipeline,
    shell_payload,
    square,
    wait_all,
)

from conftest import SSHRig
from corral.errors import CommandError
from corral.executors import executor_class
from corral.executors.base import Completion, Outcome, TaskKind
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.settings import parse_settings
from corral.executors.batch.staging import RemoteStaging
from corral.hashing import read_digest
from corral.transport.local import LocalTransport
from corral.transport.ssh import SSHTransport
from corral.transport.staging import staged_payload
from corral.transport.transfer import CACHE_DIR, cache_path
from corral.worker.execute import ResultRef, resolve_refs

pytestmark = pytest.mark.ssh
PROBES = {"sge": ["qstat", "-f"], "slurm": ["sinfo", "-h"]}
FAST = {"poll_interval": 0.2, "max_poll_interval": 1.0, "marker_interval": 0.1,
        "lost_grace": 10.0, "kill_grace": 0.5}


KINDS = [pytest.param("sge", marks=pytest.mark.sge), pytest.param("slurm", marks=pytest.mark.slurm)]


def _staged_transport(kind: str, ssh_rig: SSHRig) -> SSHTransport:
    """A non-shared SSH transport to the rig, after checking the scheduler answers through it."""
    transport = SSHTransport.from_url(ssh_rig.url, {**ssh_rig.options, "shared_filesystem": False})
    probe = transport.run(PROBES[kind], check=False, timeout=20)
    if probe.returncode != 0:
        transport.close()
        reason = f"{kind} over ssh failed: {probe.stderr.strip()[-200:]}"
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"{kind} required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
        pytest.skip(reason)
    return transport


@pytest.fixture(params=KINDS)
def make_staged(request: pytest.FixtureRequest, ssh_rig: SSHRig, workspace: Workspace,
                tmp_path: Path) -> Iterator[Any]:
    """A factory of batch executors on a non-shared SSH transport, remote root ``<tmp>/remote``."""
    kind: str = request.param
    made: list[tuple[BatchExecutor, SSHTransport]] = []

    def make(**options: Any) -> BatchExecutor:
        transport = _staged_transport(kind, ssh_rig)
        cls = executor_class(kind)
        assert issubclass(cls, BatchExecutor)
        opts = {**FAST, "remote_workdir": str(tmp_path / "remote"), **options}
        ctx = workspace.context()
        ctx.python = sys.executable
        executor = cls(parse_settings(cls.settings_class, opts, kind), ctx, transport)
        made.append((executor, transport))
        return executor

    yield make
    for executor, transport in made:
        executor.shutdown()
        transport.close()


def _remote_run(tmp_path: Path, ws: Workspace) -> Path:
    return tmp_path / "remote" / ws.run_id


def test_staged_attempts_come_back_and_successes_are_removed(
        make_staged: Any, workspace: Workspace, recorder: Recorder, tmp_path: Path) -> None:
    ex: BatchExecutor = make_staged()
    ws = workspace
    (ws.cwd / "in.txt").write_text("staged input\n")
    ex.start(recorder)
    squares = [ws.spec(python_payload(square, i), name="square") for i in range(3)]  # one array
    bad = ws.spec(python_payload(boom, "staged failure"), name="bad")
    copy = ws.spec(shell_payload("cat in.txt > copy.txt && pwd > where.txt",
                                 ["copy.txt", "where.txt"]), kind=TaskKind.SHELL, name="copy")
    copy.inputs = ["in.txt"]
    ex.submit([*squares, bad, copy])
    everything = [*squares, bad, copy]
    done = wait_all(ex, {s.attempt_id for s in everything}, timeout=120)
    remote = _remote_run(tmp_path, ws)
    assert ex.staging is not None and ex.staging.base == str(remote)
    for i, spec in enumerate(squares):
        c = done[spec.attempt_id]
        assert c.outcome is Outcome.SUCCEEDED, c.error
        assert pickle.loads(c.result or b"") == i * i
        # fetched back to the local attempt directory
        assert (spec.workdir / "stdout.log").read_text() == f"squaring {i}\n"
        assert '"outcome": "succeeded"' in (spec.workdir / "exit.json").read_text()
        assert pickle.loads((spec.workdir / "result.pkl").read_bytes()) == i * i
    c = done[copy.attempt_id]
    assert c.outcome is Outcome.SUCCEEDED, c.error
    # the shell task ran in the remote task directory, on the staged input; outputs came back
    assert (ws.cwd / "copy.txt").read_text() == "staged input\n"
    assert (ws.cwd / "where.txt").read_text().strip() == str(remote / "cwd")
    # successful attempts (and the squares' array directory) are gone from the remote side
    left = sorted(p.name for p in (remote / "work").iterdir())
    assert left == ["arrays", bad.workdir.name], left
    assert list((remote / "work" / "arrays").iterdir()) == []  # the array's directory went too
    # the failure: error and logs are here, and the remote directory is kept for inspection
    c = done[bad.attempt_id]
    assert c.outcome is Outcome.FAILED and "ValueError: staged failure" in (c.error or "")
    assert "ValueError: staged failure" in (bad.workdir / "stderr.log").read_text()
    kept = remote / "work" / bad.workdir.name
    assert {"payload.pkl", "job.sh", "exit.json", "stderr.log"} <= {p.name for p in kept.iterdir()}
    # nothing of the remote side was written into the local work root by the scheduler
    assert not (bad.workdir / "payload.pkl").exists()
    ex.shutdown()
    assert kept.is_dir() and (remote / "cwd" / "in.txt").is_file()  # kept: a failure is there


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_stages_the_tasks_input_files(ssh_rig: SSHRig, tmp_path: Path, kind: str) -> None:
    """Through the engine: declared shell inputs, Path arguments of a Python task and an upstream
    output reach the remote task directory (where ``data/`` does not exist) and outputs return."""
    _staged_transport(kind, ssh_rig).close()
    project = tmp_path / "project"
    project.mkdir()
    options = {**FAST, "remote_workdir": str(tmp_path / "remote"), "transport": ssh_rig.url,
               "transport_options": {**ssh_rig.options, "shared_filesystem": False}}
    run_staged_pipeline(project, kind, options)


def test_spec_inputs_are_the_tasks_files(tmp_path: Path) -> None:
    """make_spec fills TaskSpec.inputs: shell inputs (strings, paths, upstream shell futures in
    dicts and lists), Path arguments of Python tasks (nested too); not plain strings of Python
    tasks, nor Python futures (their paths are only known at run time)."""
    from corral import pipeline, shell, task
    from corral.engine.specs import make_spec
    from corral.resources import Resources

    @task
    def use(path: Path, paths: dict[str, Any], label: str, value: Any) -> None: ...

    @task
    def produce() -> Path:
        raise NotImplementedError("only planned here, never run")

    @pipeline
    def p() -> Any:
        a = shell("x", inputs="in/a.txt", outputs="a.out", name="a")
        b = shell("x", inputs={"x": a, "y": [Path("in/b.txt"), "in/a.txt"]},
                  outputs=["b1.out", "b2.out"], name="b")
        return use(Path("in/c.txt"), {"k": [Path("/abs/d.txt")], "b": b}, "not/a/file.txt",
                   produce())

    graph = p.build({})
    specs = {n.name: make_spec(n, "r", 1, tmp_path / "w", tmp_path, TaskKind.PYTHON, b"",
                               Resources()) for n in graph.nodes}
    assert specs["a"].inputs == ["in/a.txt"]
    assert specs["b"].inputs == ["a.out", "in/b.txt", "in/a.txt"]
    assert specs["use"].inputs == ["in/c.txt", "/abs/d.txt", "b1.out", "b2.out"]
    assert specs["produce"].inputs == []


@pytest.mark.parametrize("cleanup", ["all", "none"])
def test_remote_cleanup_all_or_none(make_staged: Any, workspace: Workspace, recorder: Recorder,
                                    tmp_path: Path, cleanup: str) -> None:
    ex: BatchExecutor = make_staged(remote_cleanup=cleanup)
    ex.start(recorder)
    ok = workspace.spec(python_payload(square, 5), name="sq")
    bad = workspace.spec(python_payload(boom, "x"), name="bad")
    ex.submit([ok, bad])
    done = wait_all(ex, {ok.attempt_id, bad.attempt_id}, timeout=120)
    assert done[ok.attempt_id].outcome is Outcome.SUCCEEDED
    assert done[bad.attempt_id].outcome is Outcome.FAILED
    assert (bad.workdir / "stderr.log").is_file() and (ok.workdir / "exit.json").is_file()
    remote = _remote_run(tmp_path, workspace)
    names = sorted(p.name for p in (remote / "work").iterdir() if p.name != "arrays")
    if cleanup == "all":
        assert names == []
        ex.shutdown()
        assert not remote.exists()  # the whole run directory went with the last attempt
    else:
        assert names == sorted([ok.workdir.name, bad.workdir.name])
        ex.shutdown()
        assert (remote / "work" / ok.workdir.name / "result.pkl").is_file()


def test_detached_mode_refuses_a_non_shared_transport(ssh_rig: SSHRig, tmp_path: Path) -> None:
    import corral
    from corral.api import RunConfig
    from corral.engine.detached import submit_detached
    from corral.errors import UsageError

    (tmp_path / "pipe.py").write_text(
        "from corral import task, pipeline\n"
        "@task\ndef one() -> int:\n    return 1\n"
        "@pipeline\ndef p():\n    return one()\n"
    )
    options = {"transport": ssh_rig.url,
               "transport_options": {**ssh_rig.options, "shared_filesystem": False}}
    cfg = RunConfig(executor="sge", executor_options=options, workdir=tmp_path, new=True)
    with pytest.raises(UsageError, match="shared"):
        submit_detached(corral.load_pipeline(tmp_path / "pipe.py"), {}, cfg)


class _BrokenFetch(LocalTransport):
    """A transport whose SFTP batch fails (connection lost mid-fetch)."""

    shared_filesystem = False

    def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        raise CommandError(["sftp", "get"], 255, "", "connection lost twice")


def test_a_success_whose_files_do_not_come_back_is_lost(tmp_path: Path) -> None:
    """No cluster: the fetch fails, or result.pkl is missing -> LOST, remote directory kept."""
    local_root = tmp_path / "work" / "r1"
    ok_dir = local_root / "0-a.1"
    for transport, why in ((_BrokenFetch(), "could not be fetched"),
                           (LocalTransport(), "result.pkl is missing")):
        staging = RemoteStaging(transport, local_root, tmp_path, "r1", str(tmp_path / "rem"),
                                "succeeded")
        remote_dir = Path(staging.remote(ok_dir))
        remote_dir.mkdir(parents=True, exist_ok=True)
        (remote_dir / "exit.json").write_text('{"outcome": "succeeded"}')
        staging.track("r1.0.1", ok_dir, python_payload(square, 2))
        comp = Completion("r1.0.1", Outcome.SUCCEEDED, result=None)
        staging.fetch([comp])
        assert comp.outcome is Outcome.LOST and why in (comp.error or ""), comp.error
        assert remote_dir.is_dir()  # kept: nothing was brought back safely


class _CountingPuts(LocalTransport):
    """Records the copies asked of it (and makes them, as SFTP would)."""

    shared_filesystem = False

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, str]] = []

    def put_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.puts.extend(pairs)
        for local, remote in pairs:
            os.makedirs(os.path.dirname(remote), exist_ok=True)
            shutil.copyfile(local, remote)


def test_an_unchanged_input_is_copied_once(tmp_path: Path) -> None:
    """Input files go through the login node's content cache (its helper run by a real
    python3): each content sent once, placed in the task directory; a changed file is sent
    again; a later run with the same contents sends nothing."""
    ws = new_workspace(tmp_path)
    (ws.cwd / "data").mkdir()
    ref, x = ws.cwd / "data" / "ref.txt", ws.cwd / "data" / "x.txt"
    ref.write_text("reference")
    x.write_text("x")
    transport = _CountingPuts()
    rem = tmp_path / "rem"
    staging = RemoteStaging(transport, ws.work_root, ws.cwd, ws.run_id, str(rem), "succeeded")
    remote_cwd = rem / ws.run_id / "cwd"

    def cached(path: Path) -> str:
        return cache_path(str(rem / CACHE_DIR), read_digest(path))

    first, second, third = (ws.spec(python_payload(square, i)) for i in range(3))
    first.inputs = ["data/ref.txt", str(x), "/elsewhere/y.txt", "gone.txt"]
    staging.stage(first)
    assert transport.puts == [(str(ref), cached(ref)), (str(x), cached(x))]
    assert (remote_cwd / "data" / "ref.txt").read_text() == "reference"
    second.inputs = ["data/ref.txt"]
    staging.stage(second)
    assert len(transport.puts) == 2  # already there, unchanged
    ref.write_text("reference, changed")
    third.inputs = ["data/ref.txt"]
    staging.stage(third)
    assert transport.puts[2:] == [(str(ref), cached(ref))]
    assert (remote_cwd / "data" / "ref.txt").read_text() == "reference, changed"
    later = RemoteStaging(transport, ws.work_root, ws.cwd, "another-run", str(rem), "succeeded")
    later.stage(first)
    assert len(transport.puts) == 3  # both contents were in the cache
    assert (rem / "another-run" / "cwd" / "data" / "x.txt").read_text() == "x"


def test_values_by_reference_go_to_the_cache_once(tmp_path: Path) -> None:
    """An engine's value file named by reference in a payload is sent to the login node's
    content cache once (a real python3 helper), and the staged payload names that copy, which
    the worker loads in the ref's place."""
    ws = new_workspace(tmp_path)
    blob = tmp_path / "blob.pkl"
    blob.write_bytes(pickle.dumps(list(range(50_000))))
    payload = python_payload(square, ResultRef(str(blob)))
    transport = _CountingPuts()
    rem = tmp_path / "rem"
    staging = RemoteStaging(transport, ws.work_root, ws.cwd, ws.run_id, str(rem), "succeeded")
    values = staging.stage_values(payload)
    copy = cache_path(str(rem / CACHE_DIR), read_digest(blob))
    assert values == {str(blob): copy} and transport.puts == [(str(blob), copy)]
    assert staging.stage_values(payload) == values and len(transport.puts) == 1
    staged = pickle.loads(staged_payload(payload, staging.cwd, staging.remote_cwd, values))
    args, _ = cloudpickle.loads(staged.args)
    assert args == (ResultRef(copy),)
    assert resolve_refs(args) == (list(range(50_000)),)
    assert staging.stage_values(python_payload(square, 3)) == {}


class _Copying(LocalTransport):
    """A local "remote" side whose get_many really copies, as SFTP would."""

    shared_filesystem = False

    def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        got = []
        for remote, local in pairs:
            if os.path.isfile(remote):
                os.makedirs(os.path.dirname(local), exist_ok=True)
                shutil.copyfile(remote, local)
                got.append(remote)
        return got


def test_returned_files_are_fetched_or_refused(tmp_path: Path) -> None:
    """No cluster: the files a successful Python task's exit marker lists come back to the same
    relative place; one outside the remote task directory fails it (one line); one that is
    missing makes it LOST, and the remote directory is kept."""
    ws = new_workspace(tmp_path)
    staging = RemoteStaging(_Copying(), ws.work_root, ws.cwd, ws.run_id, str(tmp_path / "rem"), "succeeded")
    remote_cwd = Path(staging.remote_cwd)
    (remote_cwd / "out").mkdir(parents=True)
    (remote_cwd / "out" / "x.txt").write_text("made remotely")
    cases = {"ok": ["out/x.txt"], "outside": ["/etc/hostname"], "up": ["../x.txt"], "missing": ["out/gone.txt"]}
    comps: dict[str, Completion] = {}
    dirs: dict[str, Path] = {}
    for name, files in cases.items():
        spec = ws.spec(python_payload(square, 2))
        remote_dir = Path(staging.remote(spec.workdir))
        remote_dir.mkdir(parents=True)
        dirs[name] = remote_dir
        (remote_dir / "exit.json").write_text(json.dumps({"outcome": "succeeded", "files": files}))
        (remote_dir / "result.pkl").write_bytes(pickle.dumps(None))
        staging.track(spec.attempt_id, spec.workdir, spec.payload)
        comps[name] = Completion(spec.attempt_id, Outcome.SUCCEEDED)
    staging.fetch(list(comps.values()))
    assert comps["ok"].outcome is Outcome.SUCCEEDED, comps["ok"].error
    assert (ws.cwd / "out" / "x.txt").read_text() == "made remotely"
    for name in ("outside", "up"):
        c = comps[name]
        assert c.outcome is Outcome.FAILED and c.result is None and "\n" not in (c.error or "")
        assert f"outside its remote task directory {remote_cwd}" in (c.error or "")
    assert comps["missing"].outcome is Outcome.LOST and "out/gone.txt" in (comps["missing"].error or "")
    assert not (ws.cwd / "out" / "gone.txt").exists()
    assert {name for name, d in dirs.items() if d.exists()} == {"outside", "up", "missing"}
