"""A value larger than the store's inline limit passed between two tasks on a cluster (issue
18): it arrives whole and is stored once, in the CAS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import corral
from corral.store.store import INLINE_LIMIT
from largevalues import BYTES_PIPE, MB, assert_produce_in_cas, bytes_value, run_array_pipe

OPTIONS = {"poll_interval": 0.3, "max_poll_interval": 1.0, "marker_interval": 0.2}


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_large_value_goes_between_tasks(kind: str, tmp_path: Path,
                                          harness_for: Callable[[str], Any]) -> None:
    harness_for(kind)  # skips (or fails with CORRAL_REQUIRE_CLUSTERS=1) without the cluster
    path = tmp_path / "flow.py"
    path.write_text(BYTES_PIPE)
    n = 4 * INLINE_LIMIT
    r = corral.run(corral.load_pipeline(path), {"n": n}, executor=kind,
                   executor_options=OPTIONS, jobs=2, workdir=tmp_path)
    assert r.ok, r.errors
    assert r.value == bytes_value(n)
    assert_produce_in_cas(tmp_path, r.run_id, n)


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm)])
def test_a_large_array_goes_through_the_shared_file_system(
        kind: str, tmp_path: Path, harness_for: Callable[[str], Any]) -> None:
    harness_for(kind)
    work = tmp_path / "work"
    work.mkdir()
    run_array_pipe(tmp_path, work, kind, OPTIONS)
    assert_produce_in_cas(work, None, MB * 2**20)
