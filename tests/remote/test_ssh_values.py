"""A value larger than the store's inline limit passed between two tasks on the ssh executor,
with and without a shared file system (issue 18): it arrives whole and is stored once, in the
CAS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import corral
from conftest import SSHRig
from corral.store import Store
from corral.store.store import INLINE_LIMIT

pytestmark = pytest.mark.ssh

PIPE = '''
    from corral import pipeline, task

    @task
    def produce(n: int) -> bytes:
        return bytes(range(256)) * (n // 256)

    @task
    def consume(b: bytes) -> int:
        return sum(b[::1024]) + len(b)

    @pipeline
    def flow(n: int = 0):
        return consume(produce(n))
'''


@pytest.mark.parametrize("shared", [True, False])
def test_a_large_value_goes_between_tasks(ssh_rig: SSHRig, tmp_path: Path, shared: bool) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    path = tmp_path / f"pipe_{time.monotonic_ns()}.py"
    path.write_text(textwrap.dedent(PIPE))
    n = 4 * INLINE_LIMIT
    options: dict[str, Any] = {
        "hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": shared,
        "remote_workdir": str(tmp_path / "remote"), "poll_interval": 0.5, **ssh_rig.options}
    r = corral.run(corral.load_pipeline(path), {"n": n}, executor="ssh",
                   executor_options=options, jobs=2, workdir=wd)
    assert r.ok, r.errors
    data = bytes(range(256)) * (n // 256)
    assert r.value == sum(data[::1024]) + n
    store = Store.open(wd)
    try:
        key = next(t["key"] for t in store.tasks(r.run_id) if t["name"] == "produce")
        row = store.result_row(key)
        assert row is not None and row["value"] is None and row["size"] > n
        assert store.cas.path(row["digest"]).stat().st_size == row["size"]
    finally:
        store.close()


ARRAY_PIPE = '''
    import numpy as np
    from corral import pipeline, task

    @task
    def produce(mb: int):
        return np.arange(mb * 2**20 // 8, dtype=np.float64)

    @task
    def consume(a) -> dict:
        base = a
        while isinstance(base, np.ndarray):
            base = base.base
        return {"sum": float(a[::4096].sum()), "last": float(a[-1]),
                "mapped": type(getattr(base, "obj", None)).__name__}

    @pipeline
    def flow(mb: int = 1):
        return consume(produce(mb))
'''

DRIVER = '''
import json, sys
from pathlib import Path
import corral
r = corral.run(corral.load_pipeline(sys.argv[1], "flow"), {"mb": int(sys.argv[3])},
               executor="ssh", executor_options=json.loads(sys.argv[2]), workdir=Path.cwd(),
               jobs=2)
status = open("/proc/self/status").read()  # VmHWM: this image's peak (ru_maxrss would count
rss = int(status.split("VmHWM:")[1].split()[0]) * 1024  # the parent it was forked from too)
print(json.dumps({"ok": r.ok, "errors": [str(e) for e in r.errors], "value": r.value,
                  "rss": rss}))
'''

MB = 150
"""The array between the tasks: larger than the engine's peak RSS may be."""


@pytest.mark.parametrize("shared", [True, False])
def test_a_large_array_goes_between_tasks(ssh_rig: SSHRig, tmp_path: Path, shared: bool) -> None:
    """Shared: through the file system. Staged: the result file is fetched back into the
    store and sent to the host's content cache as a file, the payload naming it by reference.
    Either way the consumer maps it and the engine's peak RSS stays below the array's size."""
    wd = tmp_path / "wd"
    wd.mkdir()
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent(ARRAY_PIPE))
    options = {"hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": shared,
               "remote_workdir": str(tmp_path / "remote"), "poll_interval": 0.5,
               **ssh_rig.options}
    argv = [sys.executable, "-c", DRIVER, str(path), json.dumps(options), str(MB)]
    proc = subprocess.run(argv, cwd=wd,  # noqa: S603 - our own argv
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"], out["errors"]
    n = MB * 2**20 // 8
    value = out["value"]
    assert (value["sum"], value["last"]) == (float(sum(range(0, n, 4096))), float(n - 1))
    assert value["mapped"] == "mmap"
    assert out["rss"] < MB * 2**20, f"the engine's peak RSS was {out['rss'] >> 20} MiB"


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
    options: dict[str, Any] = {
        "hosts": [ssh_rig.url], "python": sys.executable, "shared_filesystem": shared,
        "remote_workdir": str(tmp_path / "remote"), "poll_interval": 0.3, **ssh_rig.options}
    n = INLINE_LIMIT + 4096  # (one argument of a command line is at most 128 KiB)
    r = corral.run(corral.load_pipeline(project / "flow.py"), {"n": n}, executor="ssh",
                   executor_options=options, workdir=project)
    assert r.ok, r.errors
    assert (project / "n.txt").read_text().strip() == str(n)
