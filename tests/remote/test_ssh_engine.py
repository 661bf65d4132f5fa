"""Whole runs on the ssh executor (engine and store locally, workers through the loopback sshd):
a task over its memory request is retried with more memory; without a shared file system, a
file a Python task returns comes back, is stored, and a downstream task reads it."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from remote_helpers import run_staged_pipeline

import corral
from conftest import SSHRig

pytestmark = pytest.mark.ssh


def _load(root: Path, source: str) -> Any:
    path = root / f"pipe_{time.monotonic_ns()}.py"
    path.write_text(textwrap.dedent(source))
    return corral.load_pipeline(path)


def _attempts(wd: Path, run_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(wd / ".corral" / "state.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT state, error FROM attempts WHERE run_id = ? ORDER BY submitted_at", (run_id,))
        return [dict(r) for r in rows]


def _options(rig: SSHRig, root: Path, shared: bool) -> dict[str, Any]:
    return {"hosts": [rig.url], "python": sys.executable, "shared_filesystem": shared,
            "remote_workdir": str(root / "remote"), "poll_interval": 0.5, "kill_grace": 1.0,
            **rig.options}


def test_out_of_memory_is_retried_with_more_memory(ssh_rig: SSHRig, tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    pipe = _load(tmp_path, '''
        import time
        from corral import Resources, pipeline, task

        @task(retries=1, resources=lambda attempt: Resources(memory="150M" if attempt == 1 else "1G"))
        def hog(megabytes: int) -> int:
            block = bytearray(megabytes * 2**20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(3)
            return len(block) // 2**20

        @pipeline
        def hungry():
            return hog(400)
    ''')
    r = corral.run(pipe, executor="ssh", executor_options=_options(ssh_rig, tmp_path, True), jobs=2, workdir=wd)
    assert r.ok, r.errors
    assert r.value == 400
    attempts = _attempts(wd, r.run_id)
    assert [a["state"] for a in attempts] == ["out_of_memory", "succeeded"]
    assert "memory request of 150 MiB" in (attempts[0]["error"] or "")


def test_a_returned_file_comes_back_and_feeds_downstream(ssh_rig: SSHRig, tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    pipe = _load(tmp_path, '''
        from pathlib import Path
        from corral import pipeline, task

        @task
        def make(text: str) -> Path:
            out = Path("out/x.txt")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            return out

        @task
        def read(path: Path) -> str:
            return path.read_text().upper()

        @pipeline
        def files():
            made = make("made remotely")
            return made, read(made)
    ''')
    r = corral.run(pipe, executor="ssh", executor_options=_options(ssh_rig, tmp_path, False), jobs=2, workdir=wd)
    assert r.ok, r.errors
    made, upper = r.value
    assert Path(made) == Path("out/x.txt") and upper == "MADE REMOTELY"
    assert (wd / "out" / "x.txt").read_text() == "made remotely"
    with sqlite3.connect(wd / ".corral" / "state.db") as db:
        stored = [row[0] for row in db.execute("SELECT path FROM artifacts WHERE run_id = ? AND kind = 'file'",
                                               (r.run_id,))]
    assert stored == [str((wd / "out" / "x.txt").resolve())]  # in the store, as with a local run


def test_staged_paths_cross_over_through_a_symlinked_remote_workdir(
    ssh_rig: SSHRig, tmp_path: Path,
) -> None:
    """The staged-run pipeline (run plainly in test_ssh_executor) with the remote work
    directory reached through a symlink: ``Path.cwd()`` on the host has none, and a task's
    absolute returned path must still name the local copy, and reach its downstream task as the
    staged copy on the host."""
    (tmp_path / "real-remote").mkdir()
    (tmp_path / "remote").symlink_to(tmp_path / "real-remote")
    project = tmp_path / "project"
    project.mkdir()
    run_staged_pipeline(project, "ssh", _options(ssh_rig, tmp_path, False))
