"""Stable, type-dispatched hashing for cache keys.

Values are hashed by type (:func:`functools.singledispatch`): plain data, containers, paths,
dataclasses, enums and numpy arrays. A type with no registered hasher is refused with a
:class:`~corral.errors.HashingError` instead of falling back to ``repr`` or ``id``, which would
make cache keys silently unstable. Register more with :func:`register`.

The code part of a Python task's key (what its function reaches in the user's own code) is
computed by :mod:`corral.codehash` with these digests.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import os
import stat
import struct
import time
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, Protocol

from corral.errors import HashingError

DIGEST_SIZE = 16


def new_hasher() -> Any:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).hexdigest()


class _Unhashable(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


def _feed(value: Any, h: Any) -> None:
    """Feed ``value`` into the hasher ``h``: exact builtin types through a plain dict (the hot
    path of keying large graphs), anything else through the single-dispatch registry."""
    fn = _EXACT.get(type(value))
    if fn is None:
        fn = _dispatch.dispatch(type(value))
    fn(value, h)


@functools.singledispatch
def _dispatch(value: Any, h: Any) -> None:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(b"D" + type(value).__qualname__.encode() + b"\0")
        for f in dataclasses.fields(value):
            h.update(f.name.encode() + b"=")
            _feed(getattr(value, f.name), h)
        return
    mod = type(value).__module__
    if mod == "numpy" and type(value).__name__ == "ndarray":
        _feed_ndarray(value, h)
        return
    if mod == "numpy" and hasattr(value, "dtype") and hasattr(value, "item"):
        h.update(b"n" + str(value.dtype).encode() + b":" + repr(value.item()).encode())
        return
    raise _Unhashable(value)


def _feed_ndarray(value: Any, h: Any) -> None:
    import numpy as np

    arr = np.ascontiguousarray(value)
    if arr.dtype == object:
        raise _Unhashable(value)
    h.update(b"A" + str(arr.dtype).encode() + repr(arr.shape).encode())
    h.update(arr.tobytes())


@_dispatch.register(type(None))
def _(value: None, h: Any) -> None:
    h.update(b"N")


@_dispatch.register(bool)
def _(value: bool, h: Any) -> None:
    h.update(b"T" if value else b"F")


@_dispatch.register(int)
def _(value: int, h: Any) -> None:
    h.update(b"i" + str(value).encode() + b";")


@_dispatch.register(float)
def _(value: float, h: Any) -> None:
    h.update(b"f" + struct.pack("<d", value))


@_dispatch.register(complex)
def _(value: complex, h: Any) -> None:
    h.update(b"c" + struct.pack("<dd", value.real, value.imag))


@_dispatch.register(str)
def _(value: str, h: Any) -> None:
    data = value.encode()
    h.update(b"s" + str(len(data)).encode() + b":" + data)


@_dispatch.register(bytes)
def _(value: bytes, h: Any) -> None:
    h.update(b"b" + str(len(value)).encode() + b":" + value)


@_dispatch.register(tuple)
@_dispatch.register(list)
def _(value: list[Any] | tuple[Any, ...], h: Any) -> None:
    h.update(b"L" if isinstance(value, list) else b"U")
    h.update(str(len(value)).encode() + b"[")
    for item in value:
        _feed(item, h)
    h.update(b"]")


@_dispatch.register(dict)
def _(value: dict[Any, Any], h: Any) -> None:
    items = sorted((_str_digest(k) if type(k) is str else hash_value(k), v)
                   for k, v in value.items())
    h.update(b"M" + str(len(items)).encode() + b"{")
    for k, v in items:
        h.update(k.encode())
        _feed(v, h)
    h.update(b"}")


@_dispatch.register(frozenset)
@_dispatch.register(set)
def _(value: set[Any] | frozenset[Any], h: Any) -> None:
    # framed like lists: an unframed empty set would add nothing, so (set(), 1) == (1, set())
    h.update(b"Q" + str(len(value)).encode() + b"{")
    for k in sorted(hash_value(v) for v in value):
        h.update(b"S" + k.encode())
    h.update(b"}")


@_dispatch.register(PurePath)
def _(value: PurePath, h: Any) -> None:
    h.update(b"P" + str(value).encode() + b"\0")


@_dispatch.register(enum.Enum)
def _(value: enum.Enum, h: Any) -> None:
    h.update(b"E" + type(value).__qualname__.encode() + b".")
    _feed(value.value, h)


@_dispatch.register(range)
def _(value: range, h: Any) -> None:
    h.update(f"R{value.start}:{value.stop}:{value.step}".encode())


_EXACT: dict[type, Callable[[Any, Any], None]] = {
    cls: _dispatch.registry[cls]
    for cls in (type(None), bool, int, float, complex, str, bytes, tuple, list, dict, set,
                frozenset, range)
}


@functools.lru_cache(maxsize=4096)
def _str_digest(key: str) -> str:
    """``hash_value`` of a string, memoised: the argument names of a map repeat in every call."""
    h = new_hasher()
    _dispatch.registry[str](key, h)
    return str(h.hexdigest())


def register_feeder(cls: type, feed: Callable[[Any, Any], None]) -> None:
    """Register ``feed(value, hasher)`` for values of ``cls`` (for Corral's own types)."""
    _dispatch.register(cls)(feed)
    _EXACT.pop(cls, None)


def register(cls: type, hasher: Callable[[Any], bytes]) -> None:
    """Teach Corral to hash values of ``cls``: ``hasher(value)`` returns stable bytes."""

    def feed(value: Any, h: Any) -> None:
        h.update(b"X" + cls.__qualname__.encode() + b":" + hasher(value))

    register_feeder(cls, feed)


def hash_value(value: Any, where: str = "") -> str:
    """Hex digest of a value; raises HashingError naming ``where`` for unhashable types."""
    h = new_hasher()
    try:
        _feed(value, h)
    except _Unhashable as exc:
        kind = type(exc.value).__name__
        place = f"{where}: " if where else ""
        raise HashingError(
            f"{place}a value of type {kind} cannot be hashed stably for the cache key; pass plain "
            "data (numbers, strings, lists, dicts, paths, numpy arrays) or register a hasher "
            f"with corral.hashing.register({kind}, fn)"
        ) from None
    return str(h.hexdigest())


def feed_into(h: Any, value: Any) -> None:
    """Feed a value into an existing hasher (raises the internal error for unhashable types)."""
    _feed(value, h)


# ---------------------------------------------------------------------------- files

Signature = tuple[int, int, int, int, int]
"""What identifies a file's content without reading it: (device, inode, size, mtime_ns,
ctime_ns). Writing to a file changes its ctime (which no user call can set back), so a file
with the same signature still has the content it was hashed with."""


class DigestCache(Protocol):
    """A persistent map of file signatures to digests (the store's, see
    :mod:`corral.store.digests`): file digests survive the process that computed them."""

    def get(self, sig: Signature) -> str | None: ...

    def put(self, sig: Signature, digest: str) -> None: ...


PERSIST_MIN = 64 * 1024
"""Files smaller than this are hashed again in each process (quicker than a lookup)."""

_FILE_CACHE: dict[Signature, str] = {}
_PERSISTENT: DigestCache | None = None
REHASH = os.environ.get("CORRAL_REHASH", "") not in ("", "0")
"""Ignore digests computed by other processes (``--rehash``): every file is read once more."""


def use_digest_cache(cache: DigestCache | None) -> None:
    """Keep file digests in ``cache`` too (the state store's), beyond this process."""
    global _PERSISTENT
    _PERSISTENT = cache


def set_rehash(on: bool) -> None:
    """Read every file again instead of trusting digests cached by earlier processes."""
    global REHASH
    REHASH = on
    _FILE_CACHE.clear()


def signature(st: os.stat_result) -> Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_digest(path: str | os.PathLike[str]) -> str:
    """The digest of a file's content, read in full (no cache)."""
    h = new_hasher()
    with open(path, "rb") as fh:
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return str(h.hexdigest())


def _racy(st: os.stat_result) -> bool:
    """Whether a later write could leave the signature as it is: on a file system that keeps
    whole seconds only (some NFS servers), a same-size write within the second of the last one.
    Such a digest is kept in this process only."""
    return st.st_mtime_ns % 1_000_000_000 == 0 and time.time() - st.st_mtime < 2.0


def file_digest(path: str | os.PathLike[str]) -> str:
    """Content digest of a file (or of a directory tree). A file is read only when its
    :data:`Signature` is new: digests are memoised in this process and, for files of
    :data:`PERSIST_MIN` bytes or more, in the store's digest cache."""
    p = os.fspath(path)
    st = os.stat(p)
    if stat.S_ISDIR(st.st_mode):
        h = new_hasher()
        for root, dirs, files in os.walk(p):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, p).encode() + b"\0" + file_digest(full).encode())
        return str(h.hexdigest())
    sig = signature(st)
    cached = _FILE_CACHE.get(sig)
    if cached is not None:
        return cached
    persist = _PERSISTENT if st.st_size >= PERSIST_MIN else None
    digest = persist.get(sig) if persist is not None and not REHASH else None
    if digest is None:
        digest = read_digest(p)
        if persist is not None and signature(os.stat(p)) == sig and not _racy(st):
            persist.put(sig, digest)  # (not changed while it was read)
    _FILE_CACHE[sig] = digest
    return digest
