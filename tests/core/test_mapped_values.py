"""Large numpy values between tasks (issue 18): the worker writes the array once into a value
file whose buffers lie page-aligned, the engine moves that file into the CAS without reading it,
and the consuming task memory-maps it (copy-on-write) instead of reading it."""

from __future__ import annotations

import json
import mmap
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from corral import hashing
from corral.worker.execute import OOB_MIN, PAGE, StoredResult, dump_value, load_file

MB = 150
"""Size of the array of the round trip: above the engine's peak RSS limit of the test."""

PIPE = '''
import numpy as np
from corral import pipeline, task

@task
def produce(mb: int):
    a = np.arange(mb * 2**20 // 8, dtype=np.float64)
    t = np.arange(2**20, dtype=np.float32).reshape(1024, 1024).T  # Fortran order
    return {"a": a, "t": t, "label": "x"}

def base(a):
    while isinstance(a, np.ndarray):
        a = a.base
    return a

@task
def consume(v) -> dict:
    a = v["a"]
    a[0] = -1.0  # a private copy of the page: the stored value stays as it was
    return {"sum": float(a[::4096].sum()), "t": float(v["t"][5, 3]),
            "mapped": type(getattr(base(a), "obj", None)).__name__, "label": v["label"]}

@task
def again(v) -> float:
    return float(v["a"][0])

@pipeline
def flow(mb: int = 1):
    v = produce(mb)
    return [consume(v), again(v)]
'''

DRIVER = '''
import json, sys
from pathlib import Path
import corral
r = corral.run(corral.load_pipeline(sys.argv[1], "flow"), {"mb": int(sys.argv[2])},
               workdir=Path.cwd(), jobs=2, executor=sys.argv[3])
status = open("/proc/self/status").read()  # VmHWM: this image's peak (ru_maxrss would count
rss = int(status.split("VmHWM:")[1].split()[0]) * 1024  # the parent it was forked from too)
print(json.dumps({"ok": r.ok, "errors": [str(e) for e in r.errors], "value": r.value,
                  "rss": rss}))
'''


def _value_file(value: Any, path: Path) -> StoredResult:
    out = pickle.loads(dump_value(value, path))
    assert isinstance(out, StoredResult)
    return out


def _base(a: Any) -> Any:
    while isinstance(a, np.ndarray):
        a = a.base
    return a


def test_a_value_file_maps_its_arrays_and_any_unpickler_reads_it(tmp_path: Path) -> None:
    n = OOB_MIN // 8 + 3
    value: dict[str, Any] = {"c": np.arange(n, dtype=np.float64), "f": np.ones((n // 4, 4), order="F"),
             "strided": np.arange(n)[::2], "small": np.arange(10), "text": "é",
             "ro": np.frombuffer(b"\x07" * OOB_MIN, dtype=np.uint8)}
    ref = _value_file(value, tmp_path / "value.pkl")
    data = Path(ref.path).read_bytes()
    assert ref.size == len(data) and ref.digest == hashing.digest_bytes(data)
    for loaded in (pickle.loads(data), load_file(ref.path)):  # read whole, or mapped
        assert set(loaded) == set(value) and loaded["text"] == "é"
        for k in ("c", "f", "strided", "small", "ro"):
            assert loaded[k].dtype == value[k].dtype and np.array_equal(loaded[k], value[k])
    mapped = load_file(ref.path)
    for k in ("c", "f", "ro"):  # large and contiguous: mapped, page-aligned
        view = _base(mapped[k])
        assert isinstance(view, memoryview) and isinstance(view.obj, mmap.mmap), k
        assert mapped[k].ctypes.data % PAGE == 0
    assert mapped["f"].flags.f_contiguous and not mapped["ro"].flags.writeable
    mapped["c"][:] = 0.0  # copy-on-write: the file is unchanged
    assert hashing.digest_bytes(Path(ref.path).read_bytes()) == ref.digest
    assert load_file(ref.path)["c"][1] == 1.0


def test_a_value_without_large_buffers_is_one_plain_pickle(tmp_path: Path) -> None:
    assert pickle.loads(dump_value([1, 2], tmp_path / "v.pkl")) == [1, 2]
    assert not (tmp_path / "v.pkl").exists()
    big = list(range(300_000))  # pickled whole in the stream (no buffer), streamed to the file
    ref = _value_file(big, tmp_path / "v.pkl")
    assert load_file(ref.path) == big == pickle.loads(Path(ref.path).read_bytes())


@pytest.mark.parametrize("executor", ["local", "dask"])
def test_an_array_goes_between_tasks_mapped_not_through_the_engine(tmp_path: Path,
                                                                   executor: str) -> None:
    pipe = tmp_path / "flow.py"
    pipe.write_text(textwrap.dedent(PIPE))
    work = tmp_path / "work"
    work.mkdir()
    argv = [sys.executable, "-c", DRIVER, str(pipe), str(MB), executor]
    proc = subprocess.run(argv, cwd=work,  # noqa: S603 - our own argv
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"], out["errors"]
    n = MB * 2**20 // 8
    expected = float(sum(range(0, n, 4096))) - 1.0  # (the array is not made here)
    first, again = out["value"]
    assert first == {"sum": expected, "t": float(3 * 1024 + 5), "mapped": "mmap",
                     "label": "x"}
    assert again == 0.0  # the consumer's change stayed in its own copy
    assert out["rss"] < MB * 2**20, f"the engine's peak RSS was {out['rss'] >> 20} MiB"
    blobs = [f for f in (work / ".corral" / "cas").rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in blobs) < (MB + 6) * 2**20  # stored once


def test_a_value_file_is_read_where_files_cannot_be_mapped(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    value = np.arange(OOB_MIN // 8 + 1, dtype=np.int64)
    ref = _value_file(value, tmp_path / "value.pkl")

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise OSError(19, "No such device")  # ENODEV: what mmap says on such file systems

    mapping = mmap.mmap
    monkeypatch.setattr(mmap, "mmap", refuse)
    loaded = load_file(ref.path)
    assert np.array_equal(loaded, value)
    assert not isinstance(getattr(_base(loaded), "obj", None), mapping)
