"""Shared by the large-value tests of the batch and ssh executors (issue 18): the pipelines, a
driver that runs one in a fresh process and reports the engine's peak memory, and the checks."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from corral.store import Store

BYTES_PIPE = textwrap.dedent('''
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
''')
"""``flow(n)``: ``produce`` returns ``n`` bytes, ``consume`` reads them: see :func:`bytes_value`."""

ARRAY_PIPE = textwrap.dedent('''
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
''')

MB = 150
"""The array between the tasks of ARRAY_PIPE: larger than the engine's peak RSS may be."""

_DRIVER = '''
import json, sys
from pathlib import Path
import corral
r = corral.run(corral.load_pipeline(sys.argv[1], "flow"), {"mb": int(sys.argv[3])},
               executor=sys.argv[2], executor_options=json.loads(sys.argv[4]),
               workdir=Path.cwd(), jobs=2)
status = open("/proc/self/status").read()  # VmHWM: this image's peak (ru_maxrss would count
rss = int(status.split("VmHWM:")[1].split()[0]) * 1024  # the parent it was forked from too)
print(json.dumps({"ok": r.ok, "errors": [str(e) for e in r.errors], "value": r.value,
                  "rss": rss}))
'''


def bytes_value(n: int) -> int:
    """What BYTES_PIPE's ``flow(n)`` returns."""
    data = bytes(range(256)) * (n // 256)
    return sum(data[::1024]) + n


def run_array_pipe(tmp_path: Path, workdir: Path, executor: str,
                   options: dict[str, Any]) -> None:
    """Run ARRAY_PIPE with ``MB`` MiB in a fresh process (in ``workdir``) and check its value,
    that the consumer memory-mapped the array, and that the engine's peak RSS stayed below the
    array's size."""
    pipe = tmp_path / "array_flow.py"
    pipe.write_text(ARRAY_PIPE)
    argv = [sys.executable, "-c", _DRIVER, str(pipe), executor, str(MB), json.dumps(options)]
    proc = subprocess.run(argv, cwd=workdir,  # noqa: S603 - our own argv
                          capture_output=True, text=True, check=False, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"], out["errors"]
    n = MB * 2**20 // 8
    assert out["value"] == {"sum": float(sum(range(0, n, 4096))), "last": float(n - 1),
                            "mapped": "mmap"}
    assert out["rss"] < MB * 2**20, f"the engine's peak RSS was {out['rss'] >> 20} MiB"


def assert_produce_in_cas(workdir: Path, run_id: str | None, size_over: int) -> None:
    """The run's (default: the latest run's) ``produce`` result is stored once, in the CAS
    (not inline), and is more than ``size_over`` bytes."""
    store = Store.open(workdir)
    try:
        rid = run_id or store.list_runs(limit=1)[0]["id"]
        key = next(t["key"] for t in store.tasks(rid) if t["name"] == "produce")
        row = store.result_row(key)
        assert row is not None and row["value"] is None and row["size"] > size_over
        assert store.cas.path(row["digest"]).stat().st_size == row["size"]
    finally:
        store.close()
