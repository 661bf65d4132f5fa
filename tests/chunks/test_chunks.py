"""corral.chunks: record-aligned byte ranges found by seeking, read by tasks, merged in order;
a same-length edit of one record reruns the one chunk that holds it."""

from __future__ import annotations

import csv
import os
import random
import sqlite3
from pathlib import Path

import pytest

import corral
from corral import chunks, concat
from corral.errors import UsageError
from corral.hashing import hash_value


def fastq(path: Path, reads: int, seed: int = 1) -> None:
    """Reads of varying length; some quality lines start with '@' (the tricky case)."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(reads):
            n = rng.randint(20, 90)
            seq = "".join(rng.choice("ACGT") for _ in range(n))
            qual = "".join(rng.choice("@ABCDEFGHI") for _ in range(n))
            fh.write(f"@read{i}\n{seq}\n+\n{qual}\n")


def records(chunk: corral.Chunk) -> list[str]:
    with chunk.open() as fh:
        lines: list[str] = fh.read().splitlines()
    return lines[0::4]


@pytest.mark.parametrize("n", [1, 7, 64])
def test_fastq_chunks_cover_every_read_once(tmp_path: Path, n: int) -> None:
    path = tmp_path / "r.fastq"
    fastq(path, 3000)
    before = set(os.listdir(tmp_path))
    parts = chunks(path, n=n, by="fastq")
    assert set(os.listdir(tmp_path)) == before  # no new files
    assert len(parts) == n
    assert parts[0].start == 0 and parts[-1].end == path.stat().st_size
    assert all(a.end == b.start for a, b in zip(parts, parts[1:], strict=False))
    names = concat([records(c) for c in parts])
    assert names == [f"@read{i}" for i in range(3000)]
    assert sum(c.count_records() for c in parts) == 3000


def test_lines_fasta_csv_bytes(tmp_path: Path) -> None:
    lines = tmp_path / "l.txt"
    lines.write_text("".join(f"line {i}\n" for i in range(1000)))
    got = concat([c.open().read() for c in chunks(lines, size="1K")])
    assert got == lines.read_text()
    fa = tmp_path / "s.fa"
    fa.write_text("".join(f">s{i}\nACGT\nGGCC\n" for i in range(200)))
    parts = chunks(fa, n=9, by="fasta")
    assert all(c.read_bytes().startswith(b">") for c in parts)
    assert sum(c.count_records() for c in parts) == 200
    table = tmp_path / "t.csv"
    table.write_text("a,b\n" + "".join(f"{i},{i * i}\n" for i in range(500)))
    rows = concat([list(csv.DictReader(c.open())) for c in chunks(table, n=5, by="csv")])
    assert [int(r["b"]) for r in rows] == [i * i for i in range(500)]
    raw = chunks(table, n=3, by="bytes")
    assert b"".join(c.read_bytes() for c in raw) == table.read_bytes()


def test_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("a\n")
    with pytest.raises(UsageError, match="exactly one of"):
        chunks(tmp_path / "x")
    with pytest.raises(UsageError, match="not one of"):
        chunks(tmp_path / "x", n=2, by="xml")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="check the path"):
        chunks(tmp_path / "missing", n=2)
    assert chunks(tmp_path / "x", n=5) == chunks(tmp_path / "x", n=1)  # one line, one chunk


def test_key_is_the_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("x\ny\n")
    b.write_text("x\ny\n")
    assert hash_value(chunks(a, n=1)[0]) == hash_value(chunks(b, n=1)[0])
    b.write_text("x\nz\n")
    assert hash_value(chunks(a, n=1)[0]) != hash_value(chunks(b, n=1)[0])


PIPE = '''
from pathlib import Path
import corral
from corral import pipeline, task

@task
def gc(chunk: corral.Chunk) -> list[int]:
    with chunk.open() as fh:
        lines = fh.read().splitlines()
    return [s.count("G") + s.count("C") for s in lines[1::4]]

@task
def merge(parts: list[list[int]]) -> list[int]:
    return corral.concat(parts)

@pipeline
def split(path: str = "r.fastq", n: int = 8):
    return merge([gc(c) for c in corral.chunks(Path(path), n=n, by="fastq")])
'''


def test_pipeline_merges_in_order_and_one_edit_reruns_one_chunk(tmp_path: Path) -> None:
    data = tmp_path / "r.fastq"
    fastq(data, 2000)
    src = tmp_path / "pipe.py"
    src.write_text(PIPE)
    work = tmp_path / "work"
    work.mkdir()
    pipe = corral.load_pipeline(src)
    res = corral.run(pipe, {"path": str(data)}, workdir=work, jobs=2)
    assert res.ok, res.errors
    single = [s.count("G") + s.count("C") for s in data.read_text().splitlines()[1::4]]
    assert res.value == single
    # edit one base of one read in the middle of the file: same length, one chunk changes
    text = data.read_text().splitlines(keepends=True)
    line = 4 * 1000 + 1
    text[line] = ("A" if text[line][0] != "A" else "C") + text[line][1:]
    data.write_text("".join(text))
    res2 = corral.run(pipe, {"path": str(data)}, workdir=work, jobs=2, new=True)
    assert res2.ok, res2.errors
    assert res2.value == [s.count("G") + s.count("C") for s in data.read_text().splitlines()[1::4]]
    with sqlite3.connect(work / ".corral" / "state.db") as db:
        ran = db.execute("SELECT t.name FROM attempts a JOIN tasks t ON t.id = a.task_id "
                         "WHERE a.run_id = ?", (res2.run_id,)).fetchall()
    names = sorted(r[0] for r in ran)
    assert len([x for x in names if x.startswith("gc")]) == 1, names
