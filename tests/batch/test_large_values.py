"""A value larger than the store's inline limit passed between two tasks on a cluster (issue
18): it arrives whole and is stored once, in the CAS."""

from __future__ import annotations

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
