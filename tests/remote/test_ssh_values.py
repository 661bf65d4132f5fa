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
