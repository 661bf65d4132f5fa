"""A value larger than the store's inline limit passed between two tasks on a cluster (issue
18): it arrives whole and is stored once, in the CAS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.store import Store
from corral.store.store import INLINE_LIMIT

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


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_large_value_goes_between_tasks(kind: str, tmp_path: Path,
                                          harness_for: Callable[[str], Any]) -> None:
    harness_for(kind)  # skips (or fails with CORRAL_REQUIRE_CLUSTERS=1) without the cluster
    path = tmp_path / "flow.py"
    path.write_text(textwrap.dedent(PIPE))
    n = 4 * INLINE_LIMIT
    r = corral.run(corral.load_pipeline(path), {"n": n}, executor=kind,
                   executor_options={"poll_interval": 0.3, "max_poll_interval": 1.0,
                                     "marker_interval": 0.2},
                   jobs=2, workdir=tmp_path)
    assert r.ok, r.errors
    data = bytes(range(256)) * (n // 256)
    assert r.value == sum(data[::1024]) + n
    store = Store.open(tmp_path)
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
opts = {"poll_interval": 0.3, "max_poll_interval": 1.0, "marker_interval": 0.2}
r = corral.run(corral.load_pipeline(sys.argv[1], "flow"), {"mb": int(sys.argv[3])},
               executor=sys.argv[2], executor_options=opts, workdir=Path.cwd(), jobs=2)
status = open("/proc/self/status").read()  # VmHWM: this image's peak (ru_maxrss would count
rss = int(status.split("VmHWM:")[1].split()[0]) * 1024  # the parent it was forked from too)
print(json.dumps({"ok": r.ok, "errors": [str(e) for e in r.errors], "value": r.value,
                  "rss": rss}))
'''

MB = 150
"""The array between the tasks: larger than the engine's peak RSS may be."""


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_large_array_goes_through_the_shared_file_system(
        kind: str, tmp_path: Path, harness_for: Callable[[str], Any]) -> None:
    harness_for(kind)
    pipe = tmp_path / "flow.py"
    pipe.write_text(textwrap.dedent(ARRAY_PIPE))
    work = tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, "-c", DRIVER, str(pipe), kind, str(MB)]
    proc = subprocess.run(argv, cwd=work,  # noqa: S603 - our own argv
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"], out["errors"]
    n = MB * 2**20 // 8
    assert out["value"] == {"sum": float(sum(range(0, n, 4096))), "last": float(n - 1),
                            "mapped": "mmap"}
    assert out["rss"] < MB * 2**20, f"the engine's peak RSS was {out['rss'] >> 20} MiB"
    store = Store.open(work)
    try:
        run_id = store.list_runs(limit=1)[0]["id"]
        key = next(t["key"] for t in store.tasks(run_id) if t["name"] == "produce")
        row = store.result_row(key)
        assert row is not None and row["value"] is None and row["size"] > n * 8
        assert store.cas.path(row["digest"]).stat().st_size == row["size"]
    finally:
        store.close()
