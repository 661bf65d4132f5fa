"""Chunks of one big file, without copies: byte ranges aligned to record boundaries.

``chunks(path, n=64, by="fastq")`` seeks to ``n`` evenly spaced offsets and moves each forward
to the next record start (a line, a FASTA ``>`` header, a FASTQ ``@`` header whose third line
starts with ``+``, a CSV row), reading a few kilobytes per boundary: splitting a 2 GB file takes
milliseconds and writes nothing. A task given a :class:`Chunk` reads only its range with
:meth:`Chunk.open`. In a cache key a chunk counts by its content (its bytes, its format and the
CSV header), not by its path or offsets: after an edit that keeps the record lengths, only the
chunks whose bytes changed run again. An edit that changes the file's length moves the later
boundaries, so more chunks may rerun. :func:`concat` merges the per-chunk results in order.
"""

from __future__ import annotations

import io
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import IO, Any, Literal

from corral.errors import UsageError
from corral.hashing import new_hasher, register_feeder

Format = Literal["lines", "bytes", "fasta", "fastq", "csv"]
FORMATS: tuple[str, ...] = ("lines", "bytes", "fasta", "fastq", "csv")
WINDOW = 1 << 16
"""Bytes read at a time while looking for a record boundary."""


@dataclass(frozen=True)
class Chunk:
    """Bytes ``start`` to ``end`` (exclusive) of ``path``: whole records of format ``by``."""

    path: str
    start: int
    end: int
    index: int
    by: str = "lines"
    header: bytes = b""
    """The CSV header line, which :meth:`open` puts before the chunk's rows."""

    @property
    def size(self) -> int:
        return self.end - self.start

    def open(self, mode: Literal["r", "rb"] = "r", encoding: str = "utf-8") -> IO[Any]:
        """A file object that reads only this chunk (``"rb"`` for bytes); the CSV header first."""
        raw = io.BufferedReader(_RangeReader(self.path, self.start, self.end, self.header),
                                buffer_size=1 << 20)
        if mode == "rb":
            return raw
        if mode != "r":
            raise UsageError(f"Chunk.open(mode={mode!r}): chunks are read-only; use 'r' or 'rb'")
        return io.TextIOWrapper(raw, encoding=encoding, newline="")

    def read_bytes(self) -> bytes:
        """The chunk's bytes (without the CSV header)."""
        with open(self.path, "rb") as fh:
            fh.seek(self.start)
            return fh.read(self.size)

    def count_records(self) -> int:
        """Records in the chunk (lines, FASTA entries, FASTQ reads, CSV rows; bytes for bytes);
        reads the chunk."""
        if self.by == "bytes":
            return self.size
        lines = 0
        markers = 0
        with self.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                lines += block.count(b"\n")
                if self.by == "fasta":
                    markers += block.count(b"\n>")
        if self.by == "fasta":
            return markers + (1 if self.size else 0)
        if self.size and not self._ends_with_newline():
            lines += 1
        if self.by == "fastq":
            return lines // 4
        return lines - (1 if self.header else 0)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(self.end - 1)
            return fh.read(1) == b"\n"

    def __repr__(self) -> str:
        return f"Chunk({self.path!r}, {self.index}: bytes {self.start}-{self.end}, by={self.by!r})"


class _RangeReader(io.RawIOBase):
    """Raw reads of ``[start, end)`` of a file, after ``prefix``."""

    def __init__(self, path: str, start: int, end: int, prefix: bytes = b"") -> None:
        super().__init__()
        self._fh = open(path, "rb")
        self._fh.seek(start)
        self._left = end - start
        self._prefix = prefix

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        if self._left <= 0:
            return 0
        n = self._fh.readinto(view[: min(len(view), self._left)]) or 0
        self._left -= n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def chunks(path: str | os.PathLike[str], n: int | None = None, size: int | str | None = None,
           by: Format = "lines") -> list[Chunk]:
    """Split ``path`` into about ``n`` chunks (or chunks of about ``size`` bytes, ``"64M"``
    accepted) of whole records, by seeking. Fewer chunks come back when records are larger
    than the chunks; an empty file gives none."""
    from corral.resources import parse_memory

    if by not in FORMATS:
        raise UsageError(f"chunks(by={by!r}) is not one of {', '.join(FORMATS)}")
    if (n is None) == (size is None):
        raise UsageError("chunks() needs exactly one of n= (how many) or size= (bytes, e.g. '64M')")
    p = os.fspath(path)
    try:
        total = os.path.getsize(p)
    except OSError as exc:
        raise UsageError(
            f"chunks({p!r}): cannot read the file ({exc.strerror}); check the path") from None
    with open(p, "rb") as fh:
        header = fh.readline() if by == "csv" else b""
        first = len(header)
        body = total - first
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise UsageError(f"chunks(n={n!r}) must be a positive integer")
            count = n
        else:
            step = parse_memory(size) or 1
            count = max(1, math.ceil(body / step))
        targets = [first + body * i // count for i in range(1, count)]
        bounds = [first, *(_boundary(fh, t, by, total) for t in targets), total]
    bounds = sorted(set(bounds))
    return [Chunk(p, a, b, i, by, header) for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False))]


def _boundary(fh: IO[bytes], target: int, by: str, total: int) -> int:
    """The first record start at or after ``target``."""
    if by == "bytes" or target >= total or target <= 0:
        return max(0, min(target, total))
    if by == "fastq":
        return _fastq_boundary(fh, target, total)
    # a record starts after a newline (FASTA: a newline followed by '>')
    needle = b"\n>" if by == "fasta" else b"\n"
    pos = target - 1
    while pos < total:
        fh.seek(pos)
        block = fh.read(WINDOW + len(needle))
        i = block.find(needle)
        if i >= 0:
            return pos + i + 1
        if len(block) < WINDOW:
            return total
        pos += WINDOW
    return total


def _fastq_boundary(fh: IO[bytes], target: int, total: int) -> int:
    """The start of the first read at or after ``target``: a line starting with ``@`` whose
    second next line starts with ``+`` (a quality line may start with ``@``; a sequence never
    starts with ``+``)."""
    pos = target - 1 if target > 0 else 0
    while pos < total:
        fh.seek(pos)
        block = fh.read(WINDOW * 4)
        lines = block.split(b"\n")
        offset = pos
        starts = []
        for line in lines:
            starts.append(offset)
            offset += len(line) + 1
        # lines[0] is partial (or empty when pos sits on a newline); complete lines follow
        for k in range(1, len(lines) - 3):
            if lines[k].startswith(b"@") and lines[k + 2].startswith(b"+"):
                return starts[k]
        if len(block) < WINDOW * 4:
            return total
        pos = starts[max(1, len(lines) - 4)] - 1
    return total


# ---------------------------------------------------------------------------- cache keys
_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def chunk_digest(chunk: Chunk) -> str:
    """Digest of a chunk's bytes, memoised by (path, range, file size, mtime)."""
    st = os.stat(chunk.path)
    key = (chunk.path, chunk.start, chunk.end, st.st_size, st.st_mtime_ns)
    cached = _DIGESTS.get(key)
    if cached is None:
        h = new_hasher()
        with chunk.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        cached = _DIGESTS[key] = str(h.hexdigest())
    return cached


def _feed_chunk(value: Chunk, h: Any) -> None:
    h.update(b"K" + value.by.encode() + b":" + chunk_digest(value).encode())


register_feeder(Chunk, _feed_chunk)


# ---------------------------------------------------------------------------- merging
def concat(parts: Sequence[Any], out: str | os.PathLike[str] | None = None) -> Any:
    """Merge per-chunk results in order: files into ``out`` (returns its path), lists and
    tuples into one list, strings and bytes joined, numbers summed, dicts updated in order."""
    items = list(parts)
    if out is not None:
        target = Path(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as dst:
            for part in items:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
        return target
    if not items:
        return []
    first = items[0]
    if isinstance(first, PurePath):
        raise UsageError("concat() of files needs out=, the path of the merged file")
    if isinstance(first, list | tuple):
        return [x for part in items for x in part]
    if isinstance(first, str):
        return "".join(items)
    if isinstance(first, bytes):
        return b"".join(items)
    if isinstance(first, dict):
        merged: dict[Any, Any] = {}
        for part in items:
            merged.update(part)
        return merged
    if isinstance(first, int | float):
        return sum(items)
    raise UsageError(
        f"concat() cannot merge {type(first).__name__} values; return lists, strings, numbers, "
        "dicts or files from the chunk tasks"
    )


def iter_records(chunk: Chunk) -> Iterator[bytes]:
    """The records of a chunk as bytes (a FASTQ read's 4 lines, a FASTA entry, a line/row)."""
    with chunk.open("rb") as fh:
        if chunk.header:
            fh.readline()
        if chunk.by == "fastq":
            while True:
                rec = b"".join(fh.readline() for _ in range(4))
                if not rec:
                    return
                yield rec
        elif chunk.by == "fasta":
            entry = b""
            for line in fh:
                if line.startswith(b">") and entry:
                    yield entry
                    entry = b""
                entry += line
            if entry:
                yield entry
        else:
            yield from fh
