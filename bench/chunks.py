"""Splitting a big FASTQ-like file into chunks by seeking: time and files created.

    python bench/chunks.py               # a 2 GiB file, 64 chunks
    python bench/chunks.py --mb 100      # smaller

Writes the file once (in ``--dir``, default the system temporary folder; removed afterwards
unless ``--keep``), then times ``corral.chunks(path, n=64, by="fastq")`` cold (the page cache of
the file dropped where the system allows it, else as it is) and warm, and checks that no file
was created and that the chunks cover the file. It also times hashing the chunks for the
cache key (which reads every byte, unlike the split).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from corral import chunks
from corral.chunks import chunk_digest


def write_fastq(path: Path, mib: int) -> None:
    """Repeat a 1 MiB block of reads (lengths 50-150, quality lines starting with '@' too)."""
    rng = random.Random(7)
    block = []
    size = 0
    i = 0
    while size < 1 << 20:
        n = rng.randint(50, 150)
        rec = (f"@read{i}\n{''.join(rng.choice('ACGT') for _ in range(n))}\n+\n"
               f"{''.join(rng.choice('@ABCDEFGHIJ') for _ in range(n))}\n")
        block.append(rec)
        size += len(rec)
        i += 1
    data = "".join(block).encode()
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=2048, help="size of the file in MiB")
    ap.add_argument("-n", type=int, default=64, help="chunks")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    path = Path(args.dir) / f"corral-bench-{os.getpid()}.fastq"
    t0 = time.perf_counter()
    write_fastq(path, args.mb)
    print(f"wrote {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t0:.1f} s")
    try:
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        before = set(os.listdir(args.dir))
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            parts = chunks(path, n=args.n, by="fastq")
            took = time.perf_counter() - t0
            print(f"chunks(n={args.n}, by='fastq') {label}: {took * 1000:.1f} ms, {len(parts)} chunks")
        assert set(os.listdir(args.dir)) == before, "chunks() created files"
        assert parts[0].start == 0 and parts[-1].end == path.stat().st_size
        assert all(p.read_bytes()[:5] == b"@read" for p in parts)
        t0 = time.perf_counter()
        for p in parts:
            chunk_digest(p)
        print(f"content digests of the {len(parts)} chunks (cache key): "
              f"{time.perf_counter() - t0:.1f} s")
    finally:
        if not args.keep:
            path.unlink()


if __name__ == "__main__":
    main()
