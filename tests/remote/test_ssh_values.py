"""A value larger than the store's inline limit passed between two tasks on the ssh executor,
with and without a shared file system (issue 18): it arrives whole and is stored once, in the
CAS."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import corral
from conftest import SSHRig
from corral.store.store import INLINE_LIMIT
from largevalues import BYTES_PIPE, assert_produce_in_cas, bytes_value, run_array_pipe

pytestmark = pytest.mark.ssh


def _options(ssh_rig: SSHRig, tmp_path: Path, shared: bool, poll: float) -> dict[str, Any]:
    return {"hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": shared,
            "remote_workdir": str(tmp_path / "remote"), "poll_interval": poll, **ssh_rig.options}


@pytest.mark.parametrize("shared", [True, False])
def test_a_large_value_goes_between_tasks(ssh_rig: SSHRig, tmp_path: Path, shared: bool) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    path = tmp_path / f"pipe_{time.monotonic_ns()}.py"
    path.write_text(BYTES_PIPE)
    n = 4 * INLINE_LIMIT
    r = corral.run(corral.load_pipeline(path), {"n": n}, executor="ssh",
                   executor_options=_options(ssh_rig, tmp_path, shared, 0.5), jobs=2, workdir=wd)
    assert r.ok, r.errors
    assert r.value == bytes_value(n)
    assert_produce_in_cas(wd, r.run_id, n)


@pytest.mark.parametrize("shared", [True, False])
def test_a_large_array_goes_between_tasks(ssh_rig: SSHRig, tmp_path: Path, shared: bool) -> None:
    """Shared: through the file system. Staged: the result file is fetched back into the
    store and sent to the host's content cache as a file, the payload naming it by reference.
    Either way the consumer maps it and the engine's peak RSS stays below the array's size."""
    wd = tmp_path / "wd"
    wd.mkdir()
    run_array_pipe(tmp_path, wd, "ssh", _options(ssh_rig, tmp_path, shared, 0.5))


SHELL_PIPE = '''
    from corral import pipeline, shell, task

    @task
    def big(n: int) -> str:
        return "x" * n

    @pipeline
    def flow(n: int = 1):
        return shell("printf %s {params[s]} | wc -c > {output}", params={"s": big(n)},
                     outputs="n.txt")
'''


@pytest.mark.parametrize("shared", [True, False])
def test_a_large_value_reaches_a_shell_command_whole(ssh_rig: SSHRig, tmp_path: Path, shared: bool) -> None:
    """A value over the inline limit substituted into a shell command is the value itself, not
    a reference to its stored file (the command line is written by the engine)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.py").write_text(textwrap.dedent(SHELL_PIPE))
    options = _options(ssh_rig, tmp_path, shared, 0.3)
    n = INLINE_LIMIT + 4096  # (one argument of a command line is at most 128 KiB)
    r = corral.run(corral.load_pipeline(project / "flow.py"), {"n": n}, executor="ssh",
                   executor_options=options, workdir=project)
    assert r.ok, r.errors
    assert (project / "n.txt").read_text().strip() == str(n)
