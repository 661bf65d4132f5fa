"""Content-addressed transfers to a host without the pipeline directory (issue 18): a file is
sent once per content, whatever the number of tasks or runs that read it; a changed file is
sent again; large sends show a progress line on a terminal only."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import corral
from conftest import SSHRig
from corral.transport.transfer import CACHE_DIR

pytestmark = pytest.mark.ssh

PIPE = '''
    from pathlib import Path
    from corral import pipeline, task

    @task
    def read(data: Path, i: int, salt: int) -> int:
        return len(data.read_bytes()) + i + salt

    @pipeline
    def flow(data: Path = Path("data.bin"), salt: int = 0):
        return [read(data, i, salt) for i in range(5)]
'''

SIZE = 3 * 2**20


def _sent(records: list[logging.LogRecord]) -> tuple[int, int, int]:
    """(contents sent, bytes sent, files found in the host's cache) over the transfer logs."""
    files = size = reused = 0
    for rec in records:
        if rec.name != "corral.transport.transfer" or not isinstance(rec.args, tuple):
            continue
        if rec.msg.startswith("sent nothing"):
            reused += int(rec.args[1])  # type: ignore[call-overload]
        else:
            files += int(rec.args[0])  # type: ignore[call-overload]
            size += int(rec.args[1])  # type: ignore[call-overload]
            reused += int(rec.args[3])  # type: ignore[call-overload]
    return files, size, reused


def _cache(remote: Path) -> dict[str, tuple[int, int]]:
    """The host's content cache: digest -> (inode, mtime_ns)."""
    root = remote / CACHE_DIR
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.glob("*/*") if p.is_file()}


def test_a_file_read_by_five_tasks_is_sent_once(ssh_rig: SSHRig, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """Five tasks, one input: one content sent; a second run (tasks run again) sends nothing
    and leaves the cached copy as it was; a changed file is sent again."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.py").write_text(textwrap.dedent(PIPE))
    data = project / "data.bin"
    data.write_bytes(os.urandom(SIZE))
    remote = tmp_path / "remote"
    options: dict[str, Any] = {
        "hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": False,
        "remote_workdir": str(remote), "poll_interval": 0.3, **ssh_rig.options}
    pipe = corral.load_pipeline(project / "flow.py")

    def run(salt: int) -> tuple[int, int, int]:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="corral.transport.transfer"):
            r = corral.run(pipe, {"salt": salt}, executor="ssh", executor_options=options,
                           jobs=5, workdir=project)
        assert r.ok, r.errors
        assert r.value == [SIZE + i + salt for i in range(5)]
        return _sent(caplog.records)

    assert run(0) == (1, SIZE, 0)
    first = _cache(remote)
    assert len(first) == 1
    assert run(1) == (0, 0, 1)  # the tasks ran again: their input was in the cache
    assert _cache(remote) == first
    data.write_bytes(os.urandom(SIZE))
    assert run(2) == (1, SIZE, 0)
    second = _cache(remote)
    assert len(second) == 2 and set(first) < set(second)


SEND = '''
import json, sys
from corral.transport.ssh import SSHTransport
t = SSHTransport.from_url(sys.argv[1], json.loads(sys.argv[2]))
t.put_many([(sys.argv[3], sys.argv[4])])
t.get_many([(sys.argv[4], sys.argv[3] + ".back")])
t.close()
'''


@pytest.mark.parametrize("terminal", [True, False])
def test_a_large_send_shows_progress_on_a_terminal_only(ssh_rig: SSHRig, tmp_path: Path, terminal: bool) -> None:
    """A 70 MB file sent and fetched back: a progress line each way on standard error when it
    is a terminal (forced with FORCE_COLOR, as rich honours it), nothing when it is piped."""
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(70 * 2**20)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    if terminal:
        env["FORCE_COLOR"] = "1"
    options = {**ssh_rig.options, "shared_filesystem": False}
    argv = [sys.executable, "-c", SEND, ssh_rig.url, json.dumps(options), str(big),
            str(tmp_path / "remote" / "big.bin")]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env,  # noqa: S603 - our argv
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "remote" / "big.bin").stat().st_size == 70 * 2**20
    assert (tmp_path / "big.bin.back").stat().st_size == 70 * 2**20
    if terminal:
        assert "corral: sending 1 file(s) to" in proc.stderr and "73.4" in proc.stderr, proc.stderr[-500:]
        assert "corral: fetching from" in proc.stderr, proc.stderr[-500:]
    else:
        assert proc.stderr == ""


VALUES = '''
    from corral import pipeline, task

    @task
    def produce(n: int) -> bytes:
        return bytes(range(256)) * (n // 256)

    @task
    def consume(b: bytes, i: int) -> int:
        return sum(b[::997]) + len(b) + i

    @pipeline
    def flow(n: int = 0):
        value = produce(n)
        return [consume(value, i) for i in range(3)]
'''


def test_a_value_made_on_the_host_is_not_sent_back(ssh_rig: SSHRig, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A 2 MiB value made on the host goes to three tasks there by reference: the host kept it
    in its cache when its result was fetched, so nothing is sent, and the values are right."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "flow.py").write_text(textwrap.dedent(VALUES))
    remote = tmp_path / "remote"
    options: dict[str, Any] = {
        "hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": False,
        "remote_workdir": str(remote), "poll_interval": 0.3, **ssh_rig.options}
    n = 2 * 2**20
    with caplog.at_level(logging.INFO, logger="corral.transport.transfer"):
        r = corral.run(corral.load_pipeline(project / "flow.py"), {"n": n}, executor="ssh",
                       executor_options=options, jobs=3, workdir=project)
    assert r.ok, r.errors
    data = bytes(range(256)) * (n // 256)
    assert r.value == [sum(data[::997]) + n + i for i in range(3)]
    files, size, reused = _sent(caplog.records)
    assert (files, size) == (0, 0) and reused >= 1  # once per launch batch of consumers
    assert len(_cache(remote)) == 1
