"""Large arguments are sent once: stored in the run's content store, referenced by every call."""

from __future__ import annotations

import os
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import corral
from corral.interactive.shared import SHARE_MIN

from .test_interactive_clusters import FAST, require_cluster

BIG = 1 << 20  # bytes of the shared array


def weigh(x: int, data: Any, scale: int = 1) -> float:
    return float(data[x] * scale + data.sum())


def _blobs(wd: Path) -> list[int]:
    """Sizes of the files of the content store."""
    return sorted(p.stat().st_size for p in (wd / ".corral").rglob("*")
                  if p.is_file() and "cas" in p.relative_to(wd / ".corral").parts)


def _payloads(wd: Path) -> int:
    """Bytes written into the attempt directories (payloads, results, logs)."""
    return sum(p.stat().st_size for p in (wd / ".corral" / "work").rglob("*") if p.is_file())


def test_map_with_a_repeated_array_stores_it_once(wd: Path) -> None:
    data = np.arange(BIG // 8, dtype=np.int64)
    expected = [float(data[x] + data.sum()) for x in range(40)]
    with corral.Executor(workdir=wd, jobs=2) as ex:
        assert list(ex.map(weigh, range(40), repeat(data))) == expected
        run_id = ex.run_id
    big = [size for size in _blobs(wd) if size >= BIG]
    assert len(big) == 1 and big[0] < BIG + 4096, _blobs(wd)
    assert _payloads(wd) < 40 * SHARE_MIN  # no call carried the array
    tasks = corral.attach(run_id, wd).tasks()
    assert len(tasks) == 40 and {t["state"] for t in tasks} == {"succeeded"}


def test_a_big_object_passed_to_many_submits_is_stored_once(wd: Path) -> None:
    data = np.arange(BIG // 8, dtype=np.int64)
    with corral.Executor(workdir=wd, jobs=2) as ex:
        futures = [ex.submit(weigh, x, data, scale=2) for x in range(10)]
        futures.append(ex.submit(weigh, 3, data=data.copy()))  # equal content: the same blob
        values = [f.result(timeout=60) for f in futures]
    total = float(data.sum())
    assert values == [float(data[x] * 2) + total for x in range(10)] + [float(data[3]) + total]
    assert len([size for size in _blobs(wd) if size >= BIG]) == 1, _blobs(wd)


def test_a_changed_array_is_a_new_value_and_the_same_one_a_cache_hit(wd: Path) -> None:
    data = np.arange(BIG // 8, dtype=np.int64)
    with corral.Executor(workdir=wd) as ex:
        first = ex.submit(weigh, 1, data).result(timeout=60)
        data[1] = -5  # changed in place between two calls: the second sees the change
        second = ex.submit(weigh, 1, data).result(timeout=60)
    assert first == 1 + float(np.arange(BIG // 8).sum())
    assert second == -5 + float(data.sum())
    assert len([size for size in _blobs(wd) if size >= BIG]) == 2
    with corral.Executor(workdir=wd) as ex:  # a new session, the same array: from the cache
        assert ex.submit(weigh, 1, data).result(timeout=60) == second
        run_id = ex.run_id
    assert [t["cached"] for t in corral.attach(run_id, wd).tasks()] == [True]


@pytest.mark.slurm
def test_on_slurm_the_payloads_reference_the_stored_array(tmp_path: Path) -> None:
    """A batch job's payload is a file in its attempt directory: each is small, the array is
    in the content store once, and the jobs read it from there."""
    require_cluster("slurm")
    os.chmod(tmp_path, 0o755)
    data = np.arange(BIG // 8, dtype=np.int64)
    expected = [float(data[x] + data.sum()) for x in range(6)]
    with corral.Executor("slurm", workdir=tmp_path, executor_options=FAST) as ex:
        assert list(ex.map(weigh, range(6), repeat(data))) == expected
    payloads = list((tmp_path / ".corral" / "work").rglob("payload.pkl"))
    assert len(payloads) == 6 and all(p.stat().st_size < 4096 for p in payloads)
    assert len([size for size in _blobs(tmp_path) if size >= BIG]) == 1
