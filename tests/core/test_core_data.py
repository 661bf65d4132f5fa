"""Data at scale (issue 18): outputs are not copied into the store, unchanged files are not read
again, and large values go from worker to worker through files, not through the engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from corral import hashing
from corral.engine import engine as engine_mod
from corral.engine.specs import PayloadBuilder
from corral.store import cas as cas_mod
from corral.worker.execute import ResultRef, StoredResult

from .corehelp import Helper

BIG = 300_000
"""Bytes of the 'large' output: above the copy limit the tests set, small enough to be quick."""

SHELL_PIPE = '''
from corral import pipeline, shell

@pipeline
def make(size: int = {size}):
    return shell("head -c {{params[size]}} /dev/zero | tr '\\\\0' x > {{output}}",
                 params={{"size": size}}, outputs="out.dat", name="make")
'''


def _cas_bytes(h: Helper) -> int:
    root = h.workdir / ".corral" / "cas"
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


@pytest.fixture
def copy_max(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("CORRAL_OUTPUT_COPY_MAX", "100000")
    return 100_000


def test_a_large_output_is_not_copied_and_a_deleted_one_reruns(
        helper: Helper, copy_max: int, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    _count_reads(monkeypatch, reads)
    pipe = helper.load(SHELL_PIPE.format(size=BIG), "make")
    r1 = helper.run(pipe)
    assert r1.ok, r1.errors
    out = helper.workdir / "out.dat"
    assert out.stat().st_size == BIG
    assert _cas_bytes(helper) < copy_max  # no second copy of the output
    row = helper.store.result_row(helper.tasks(r1.run_id)["make"]["key"])
    assert row is not None and row["outputs"] == {str(out): hashing.read_digest(out)}
    assert reads.count(str(out)) == 2  # recorded, and by the line above
    hashing._FILE_CACHE.clear()  # as in a new process
    assert helper.ran(helper.run(pipe).run_id) == []  # intact: a cache hit
    assert reads.count(str(out)) == 2  # checked without reading it
    out.unlink()
    r3 = helper.run(pipe)
    assert helper.ran(r3.run_id) == ["make"] and out.stat().st_size == BIG


def test_a_small_output_is_copied_and_restored(helper: Helper, copy_max: int) -> None:
    pipe = helper.load(SHELL_PIPE.format(size=1000), "make")
    assert helper.run(pipe).ok
    out = helper.workdir / "out.dat"
    assert _cas_bytes(helper) >= 1000
    out.unlink()
    r2 = helper.run(pipe)
    assert helper.ran(r2.run_id) == [] and out.read_bytes() == b"x" * 1000


def test_a_modified_output_makes_the_task_rerun(helper: Helper, copy_max: int) -> None:
    pipe = helper.load(SHELL_PIPE.format(size=BIG), "make")
    assert helper.run(pipe).ok
    out = helper.workdir / "out.dat"
    with open(out, "r+b") as fh:
        fh.write(b"y")  # same size
    r2 = helper.run(pipe)
    assert helper.ran(r2.run_id) == ["make"] and out.read_bytes()[:1] == b"x"


def test_a_reflinked_output_is_restored(helper: Helper, copy_max: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    clones: list[Path] = []

    def fake_reflink(src: Path, dst: Path) -> bool:  # what FICLONE makes, on ext4 too
        dst.write_bytes(Path(src).read_bytes())
        clones.append(dst)
        return True

    monkeypatch.setattr(cas_mod, "reflink", fake_reflink)
    pipe = helper.load(SHELL_PIPE.format(size=BIG), "make")
    assert helper.run(pipe).ok and clones
    out = helper.workdir / "out.dat"
    out.unlink()
    r2 = helper.run(pipe)
    assert helper.ran(r2.run_id) == [] and out.stat().st_size == BIG


INPUT_PIPE = '''
from pathlib import Path
from corral import pipeline, task

@task
def size(p: Path) -> int:
    return Path(p).stat().st_size

@pipeline
def measure():
    return size(Path("in.dat"))
'''


def _count_reads(monkeypatch: pytest.MonkeyPatch, paths: list[str]) -> None:
    real = hashing.read_digest

    def counting(path: str | os.PathLike[str]) -> str:
        paths.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(hashing, "read_digest", counting)


def test_an_unchanged_input_is_read_once(helper: Helper, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    data = helper.workdir / "in.dat"
    data.write_bytes(b"a" * hashing.PERSIST_MIN)
    reads: list[str] = []
    _count_reads(monkeypatch, reads)
    pipe = helper.load(INPUT_PIPE, "measure")
    assert helper.run(pipe).ok
    assert reads.count(str(data)) == 1
    hashing._FILE_CACHE.clear()  # as in a new process: only the store's cache is left
    r2 = helper.run(pipe)
    assert helper.ran(r2.run_id) == [] and reads.count(str(data)) == 1
    os.utime(data)  # touched, not changed: read once more, and nothing reruns
    hashing._FILE_CACHE.clear()
    r3 = helper.run(pipe)
    assert helper.ran(r3.run_id) == [] and reads.count(str(data)) == 2
    data.write_bytes(b"b" * (hashing.PERSIST_MIN + 1))  # changed: read, and its reader reruns
    hashing._FILE_CACHE.clear()
    r4 = helper.run(pipe)
    assert helper.ran(r4.run_id) == ["size"] and r4.value == hashing.PERSIST_MIN + 1
    assert reads.count(str(data)) == 3


def test_rehash_reads_the_file_again(helper: Helper, monkeypatch: pytest.MonkeyPatch) -> None:
    data = helper.workdir / "in.dat"
    data.write_bytes(b"a" * hashing.PERSIST_MIN)
    reads: list[str] = []
    _count_reads(monkeypatch, reads)
    pipe = helper.load(INPUT_PIPE, "measure")
    assert helper.run(pipe).ok
    monkeypatch.setattr(hashing, "REHASH", True)
    hashing._FILE_CACHE.clear()
    assert helper.ran(helper.run(pipe).run_id) == []
    assert reads.count(str(data)) == 2


VALUE_PIPE = '''
from corral import pipeline, task

@task
def produce(n: int) -> bytes:
    return bytes(range(256)) * (n // 256)

@task
def consume(b: bytes) -> int:
    return sum(b[::4096]) + len(b)

@pipeline
def flow(n: int = 1 << 20):
    return consume(produce(n))
'''


def _by_reference(monkeypatch: pytest.MonkeyPatch, args: list[Any]) -> None:
    """Payloads built with ``Engine.load_arg`` (as the engine's ``_spec`` is to call it), and
    what they were given seen by the test."""
    real = PayloadBuilder.payload

    def payload(self: PayloadBuilder, node: Any, load: Callable[[Any], Any]) -> Any:
        engine = load.__self__  # type: ignore[attr-defined]

        def by_ref(fut: Any) -> Any:
            value = engine.load_arg(fut)
            args.append(value)
            return value

        return real(self, node, by_ref)

    monkeypatch.setattr(PayloadBuilder, "payload", payload)


def test_a_large_value_goes_between_tasks_by_reference(helper: Helper,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    results: list[Any] = []
    real_succeed = engine_mod.Engine._succeed

    def succeed(self: Any, idx: int, comp: Any) -> None:
        results.append(comp.result)
        real_succeed(self, idx, comp)

    monkeypatch.setattr(engine_mod.Engine, "_succeed", succeed)
    args: list[Any] = []
    _by_reference(monkeypatch, args)
    n = 1 << 20
    expected = sum((bytes(range(256)) * (n // 256))[::4096]) + n
    r1 = helper.run(helper.load(VALUE_PIPE, "flow"))
    assert r1.ok, r1.errors
    assert r1.value == expected
    assert all(len(r) < 4096 for r in results)  # the engine got references, not the bytes
    refs = [a for a in args if isinstance(a, ResultRef)]
    assert len(refs) == 1 and Path(refs[0].path).stat().st_size > n
    assert Path(refs[0].path).is_relative_to(helper.workdir / ".corral" / "cas")
    assert not list((helper.workdir / ".corral").rglob("value.pkl"))  # moved, not copied
    # the consumer again, from a result stored by an earlier run
    r2 = helper.run(helper.load(VALUE_PIPE.replace("len(b)", "len(b) + 1"), "flow"))
    assert r2.ok and r2.value == expected + 1 and helper.ran(r2.run_id) == ["consume"]
    assert isinstance(args[-1], ResultRef)
    # and the engine loads it when asked for it
    key = helper.tasks(r1.run_id)["produce"]["key"]
    assert len(helper.store.load_value(key)) > n


def test_a_stored_result_is_a_reference(tmp_path: Path) -> None:
    import pickle

    from corral.worker.execute import dump_value, load_file

    big = b"z" * (3 << 20)  # one write, hashed aside (HASH_ASIDE)
    small = dump_value(b"s", tmp_path / "v.pkl")
    assert pickle.loads(small) == b"s" and not (tmp_path / "v.pkl").exists()
    ref = pickle.loads(dump_value(big, tmp_path / "v.pkl"))
    assert isinstance(ref, StoredResult) and ref.size == os.path.getsize(ref.path)
    assert ref.digest == hashing.digest_bytes(Path(ref.path).read_bytes())
    assert load_file(ref.path) == big


class _Cache:
    def __init__(self) -> None:
        self.entries: dict[hashing.Signature, str] = {}

    def get(self, sig: hashing.Signature) -> str | None:
        return self.entries.get(sig)

    def put(self, sig: hashing.Signature, digest: str) -> None:
        self.entries[sig] = digest


def test_a_digest_of_whole_second_times_is_not_kept_while_racy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    cache = _Cache()
    monkeypatch.setattr(hashing, "_PERSISTENT", cache)
    coarse, fine = tmp_path / "coarse.dat", tmp_path / "fine.dat"
    for f in (coarse, fine):
        f.write_bytes(b"c" * hashing.PERSIST_MIN)
    now = int(time.time())
    os.utime(coarse, ns=(now * 10**9, now * 10**9))  # as a file system of whole seconds
    os.utime(fine, ns=(now * 10**9 + 123, now * 10**9 + 123))
    assert hashing.file_digest(coarse) == hashing.file_digest(fine)
    assert list(cache.entries) == [hashing.signature(fine.stat())]


def test_a_folder_output_is_recorded_by_digest(helper: Helper) -> None:
    pipe = helper.load('''
from corral import pipeline, shell

@pipeline
def folder():
    return shell("mkdir -p {output} && echo a > {output}/a.txt", outputs="parts", name="parts")
''', "folder")
    assert helper.run(pipe).ok
    assert helper.ran(helper.run(pipe).run_id) == []
    (helper.workdir / "parts" / "a.txt").write_text("b\n")
    assert helper.ran(helper.run(pipe).run_id) == ["parts"]


def test_clean_says_which_outputs_the_store_keeps(helper: Helper, copy_max: int) -> None:
    pipe = helper.load(SHELL_PIPE.format(size=1000), "make")
    assert helper.run(pipe).ok
    assert helper.run(pipe, {"size": BIG}).ok
    stats = helper.store.collect_garbage(dry_run=True)
    assert (stats["outputs"], stats["outputs_kept"]) == (2, 1)  # the small one only


def test_the_rehash_option_of_corral_run(helper: Helper, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from corral.cli.app import app

    data = helper.workdir / "in.dat"
    data.write_bytes(b"a" * hashing.PERSIST_MIN)
    reads: list[str] = []
    _count_reads(monkeypatch, reads)
    pipe_file = helper.write(INPUT_PIPE)
    monkeypatch.chdir(helper.workdir)
    monkeypatch.setattr(hashing, "REHASH", hashing.REHASH)  # restored after the test
    args = ["run", str(pipe_file), "measure", "-q"]
    assert CliRunner().invoke(app, args, catch_exceptions=False).exit_code == 0
    hashing._FILE_CACHE.clear()
    assert CliRunner().invoke(app, args, catch_exceptions=False).exit_code == 0
    assert reads.count(str(data)) == 1  # trusted: same size, times and inode
    hashing._FILE_CACHE.clear()
    assert CliRunner().invoke(app, [*args, "--rehash"], catch_exceptions=False).exit_code == 0
    assert reads.count(str(data)) == 2
