"""Large arguments sent once: stored in the run's content store, referenced by every call.

``ex.map(fit, seeds, repeat(data))`` or a big object passed to many ``submit`` calls would
otherwise be pickled into every call's payload. :class:`Sharer` replaces an argument whose
pickle is at least :data:`SHARE_MIN` bytes by a :class:`Shared`: the pickle is written once to
the content-addressed store (``.corral/cas/``, by its digest), and the :class:`Shared` pickles
as a reference to that file, which the worker loads in its place
(:func:`corral.worker.execute.load_file`). In a cache key a :class:`Shared` counts by the
digest of the value it stands for, so the key does not depend on where the value is kept.

Executors whose workers may not see this machine's files (ssh or a cluster without a shared
file system) get the value itself in each payload, as before; the cache key is the same.
"""

from __future__ import annotations

from typing import Any

from corral.errors import CorralError
from corral.executors.base import Executor as Backend
from corral.hashing import hash_value, register_feeder
from corral.pickling import dumps
from corral.store.cas import CAS
from corral.worker.execute import SPILL_MIN, load_file

SHARE_MIN = SPILL_MIN
"""Pickled arguments of at least this many bytes are stored once and sent by reference (the
size from which the store keeps values in its content store anyway)."""
SMALL_MAX = 100_000
"""Digests of small values remembered (not to pickle them again to weigh them)."""
_PLAIN: frozenset[type] = frozenset({bool, int, float, complex, type(None)})


class Shared:
    """A large argument: its content digest (``key``) and either the file holding its pickle
    (``path``) or, for workers that cannot read that file, the value itself."""

    __slots__ = ("key", "kind", "path", "size", "value")

    def __init__(self, key: str, kind: str, size: int, path: str | None, value: Any) -> None:
        self.key, self.kind, self.size, self.path, self.value = key, kind, size, path, value

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.path is not None:
            return load_file, (self.path,)
        return _itself, (self.value,)

    def __repr__(self) -> str:
        return f"<{self.kind}, {self.size / 1e6:.1f} MB, sent once>"


def _itself(value: Any) -> Any:
    return value


def _feed_shared(value: Shared, h: Any) -> None:
    h.update(b"S" + value.key.encode())


register_feeder(Shared, _feed_shared)


def reads_local_files(backend: Backend) -> bool:
    """Whether the backend's workers read this machine's files, as the engine decides for
    upstream values: the local executor, and those that say so
    (:attr:`~corral.executors.base.Executor.reads_engine_files`: a shared file system, a dask
    cluster started on this machine)."""
    return backend.kind == "local" or backend.reads_engine_files


class Sharer:
    """Turns the large arguments of calls into :class:`Shared` ones, each stored once."""

    def __init__(self, cas: CAS, by_reference: bool) -> None:
        self.cas, self.by_reference = cas, by_reference
        self.shared: dict[str, Shared] = {}
        """Content digest -> its :class:`Shared`."""
        self.small: set[str] = set()
        """Digests of values found small (sent as they are); forgotten past :data:`SMALL_MAX`."""

    def args(self, args: tuple[Any, ...], kwargs: dict[str, Any], memo: dict[int, Any]
             ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``args`` and ``kwargs`` with the large values shared; ``memo`` (by ``id``) spares
        hashing an object again within one batch (``map``'s ``repeat(data)``)."""
        if not kwargs and all(type(a) in _PLAIN for a in args):  # nothing to weigh
            return args, kwargs
        return (tuple(self.one(a, memo) for a in args),
                {k: self.one(v, memo) for k, v in kwargs.items()})

    def one(self, value: Any, memo: dict[int, Any]) -> Any:
        kind = type(value)
        if kind in _PLAIN or kind is Shared or (kind in (str, bytes) and len(value) < SHARE_MIN):
            return value
        held = memo.get(id(value))
        if held is not None and held[0] is value:
            return held[1]
        shared = self._share(value)
        memo[id(value)] = (value, shared)
        return shared

    def _share(self, value: Any) -> Any:
        try:
            key = hash_value(value)
        except CorralError:  # the engine fails this call alone, saying why
            return value
        shared = self.shared.get(key)
        if shared is not None or key in self.small:
            return value if shared is None else shared
        try:
            data = dumps(value)
        except Exception:  # likewise
            return value
        if len(data) < SHARE_MIN:
            if len(self.small) >= SMALL_MAX:
                self.small.clear()
            self.small.add(key)
            return value
        self.shared[key] = shared = self._store(key, value, data)
        return shared

    def _store(self, key: str, value: Any, data: bytes) -> Shared:
        kind = type(value).__name__
        if not self.by_reference:
            return Shared(key, kind, len(data), None, value)
        digest = self.cas.put_bytes(data)
        return Shared(key, kind, len(data), str(self.cas.path(digest)), None)
