"""Pipeline parameters typed from the signature: conversion and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

import corral
from corral import pipeline, task
from corral.errors import ParameterError
from corral.params import check_params, parse_cli_params, signature_params


@task
def echo(x: object) -> object:
    return x


@pipeline
def typed(
    n: int,
    scale: float = 1.0,
    verbose: bool = False,
    data: Path = Path("in.csv"),
    mode: Literal["fast", "exact"] = "fast",
    sizes: list[int] = [1, 2],  # noqa: B006 - a default read, never mutated
    label: str = "x",
    level: int | None = None,
) -> object:
    return echo((n, scale, verbose, data, mode, sizes, label, level))


def test_signature_types() -> None:
    spec = signature_params(typed)
    assert spec["n"][0] is int and spec["scale"][0] is float and spec["data"][0] is Path
    assert spec["label"] == (str, "x")


def test_check_params_converts_strings_and_keeps_defaults() -> None:
    values = check_params(typed, {
        "n": "14", "scale": "0.5", "verbose": "yes", "data": "d/x.csv", "mode": "exact",
        "sizes": "3,4,5", "level": "2",
    })
    assert values == {
        "n": 14, "scale": 0.5, "verbose": True, "data": Path("d/x.csv"), "mode": "exact",
        "sizes": [3, 4, 5], "label": "x", "level": 2,
    }
    assert check_params(typed, {"n": 3}) == {
        "n": 3, "scale": 1.0, "verbose": False, "data": Path("in.csv"), "mode": "fast",
        "sizes": [1, 2], "label": "x", "level": None,
    }
    assert check_params(typed, {"n": 1, "sizes": [7, "8"], "verbose": "off"})["sizes"] == [7, 8]
    assert check_params(typed, {"n": 1, "scale": 2})["scale"] == 2


@pytest.mark.parametrize(("given", "pattern"), [
    ({"n": 1, "nn": 2}, r"has no parameter --nn; its parameters are --n, --scale"),
    ({}, r"needs --n \(no default\)"),
    ({"n": "many"}, r"--n expects int, got 'many'; e.g. --n 14"),
    ({"n": True}, r"--n expects int"),
    ({"n": 1, "scale": "big"}, r"--scale expects float.*e.g. --scale 0.5"),
    ({"n": 1, "verbose": "maybe"}, r"--verbose expects bool.*--verbose true"),
    ({"n": 1, "mode": "slow"}, r"--mode must be one of fast, exact, not 'slow'"),
    ({"n": 1, "sizes": "1,two"}, r"--sizes expects int, got 'two'"),
    ({"n": 1, "level": "high"}, r"--level expects int"),
])
def test_bad_parameters_give_one_line_errors(given: dict[str, object], pattern: str) -> None:
    with pytest.raises(ParameterError, match=pattern) as info:
        check_params(typed, given)
    assert "\n" not in str(info.value)


def test_parse_cli_params() -> None:
    args = ["--n", "14", "--scale=0.25", "--verbose", "--mode", "exact", "--sizes", "1,2,3",
            "--data", "a b.csv"]
    raw = parse_cli_params(typed, args)
    assert raw == {"n": "14", "scale": "0.25", "verbose": "true", "mode": "exact",
                   "sizes": "1,2,3", "data": "a b.csv"}
    values = check_params(typed, raw)
    assert values["n"] == 14 and values["verbose"] is True and values["data"] == Path("a b.csv")
    assert parse_cli_params(typed, ["--no-verbose"]) == {"verbose": "false"}
    assert parse_cli_params(typed, ["--verbose", "--n", "2"]) == {"verbose": "true", "n": "2"}
    assert parse_cli_params(typed, ["--verbose", "false"]) == {"verbose": "false"}
    with pytest.raises(ParameterError, match="unexpected argument 'oops'"):
        parse_cli_params(typed, ["oops"])
    with pytest.raises(ParameterError, match="--n needs a value"):
        parse_cli_params(typed, ["--n"])
    with pytest.raises(ParameterError, match="has no parameter --colour"):
        check_params(typed, parse_cli_params(typed, ["--colour", "red"]))


def test_typed_parameters_reach_the_tasks(tmp_path: Path) -> None:
    r = corral.run(typed, {"n": "3", "verbose": "1", "sizes": "5"}, jobs=1, workdir=tmp_path)
    assert r.ok, r.errors
    assert r.value == (3, 1.0, True, Path("in.csv"), "fast", [5], "x", None)


def test_untyped_parameters_take_the_default_type() -> None:
    @pipeline
    def loose(k=3, name="a"):  # type: ignore[no-untyped-def]
        return echo(k)

    assert check_params(loose, {"k": "7"}) == {"k": 7, "name": "a"}
