"""Cache-key hashing: digests are stable across versions, and the fast paths agree with the
type registry; the engine's garbage-collector pause never leaves collection off."""

from __future__ import annotations

import enum
import gc
from pathlib import PurePosixPath
from typing import Any

import pytest

from corral.engine.gc_pause import collection_paused
from corral.errors import HashingError
from corral.hashing import hash_value, register

# Digests recorded from Corral 0.1.0 (sets: since they are framed like lists). A change here
# changes every cache key in users' stores (everything would rerun once): do it on purpose,
# or not at all.
GOLDEN: list[tuple[Any, str]] = [
    (None, "738096e476d3c5447c3cb95c39bfc964"),
    (True, "0583525866ce6d4c711b8d319b34a247"),
    (7, "a839074902a08a481430ac4c7b413ab6"),
    (2.5, "98083b22c2b676e6bde1eed346826704"),
    ("s", "8cc3e9d9aa113ef94234939c70738bc7"),
    ((1, "a"), "ee1e0d285bcbb398956125fddbedd7cd"),
    ([1, [2]], "ff0c8ec322dc63a0b4aa6697b27e0049"),
    ({"a": 1, 2: "b"}, "928134b72f3990f75183ae74a6e0288f"),
    ({1, 2}, "6156af7519345b97ec919f459b5f10d3"),
    (range(3), "bb0faa284333c53fcef61f2430b79927"),
    (PurePosixPath("/x"), "cfb8b6c07c08205633eecd9251dfb257"),
]


@pytest.mark.parametrize(("value", "digest"), GOLDEN, ids=[repr(v) for v, _ in GOLDEN])
def test_digests_are_stable(value: Any, digest: str) -> None:
    assert hash_value(value) == digest


def test_types_are_told_apart_and_dict_order_does_not_matter() -> None:
    assert hash_value({"a": 1, "b": 2}) == hash_value({"b": 2, "a": 1})
    assert hash_value({3, 1, 2}) == hash_value(frozenset({1, 2, 3}))  # equal values
    distinct = [1, True, 1.0, "1", b"1", (1,), [1], {1}, {"1": 1}, range(1)]
    assert len({hash_value(v) for v in distinct}) == len(distinct)


def test_empty_containers_still_count_in_their_position() -> None:
    assert hash_value((set(), 1)) != hash_value((1, set()))
    assert hash_value(((), 1)) != hash_value((1, ()))
    assert hash_value(({}, 1)) != hash_value((1, {}))


class Colour(enum.IntEnum):
    RED = 1


class Mode(enum.Enum):
    A = 1


class Point:
    def __init__(self, x: int) -> None:
        self.x = x


def test_subclasses_of_builtins_dispatch_by_their_classes() -> None:
    # an IntEnum is an int first (Colour.RED == 1), as the type registry's MRO lookup says
    assert hash_value(Colour.RED) == hash_value(1)
    assert hash_value(Mode.A) != hash_value(1)  # a plain Enum is hashed as an enum member


def test_registered_types_and_unhashable_values() -> None:
    with pytest.raises(HashingError, match=r"type Point cannot be hashed.*register"):
        hash_value({"p": Point(1)}, "task t")
    register(Point, lambda p: str(p.x).encode())
    assert hash_value(Point(1)) == hash_value(Point(1)) != hash_value(Point(2))


def test_collection_pause_restores_the_collector() -> None:
    assert gc.isenabled()
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_collection_pause_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
