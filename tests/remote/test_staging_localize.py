"""Values of Python tasks run without a shared file system: the absolute remote paths of the
files a task returned (and that were fetched back) name the local copies."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import cloudpickle

from corral.transport.staging import localize_result

REMOTE = "/home/u/.corral/remote/run1/cwd"


def _round_trip(value: Any, files: list[str], local: Path) -> Any:
    data = localize_result(cloudpickle.dumps(value), {"files": files}, REMOTE + "/", local)
    return cloudpickle.loads(data) if data is not None else None


def test_fetched_files_name_their_local_copies(tmp_path: Path) -> None:
    value = {
        "png": Path(REMOTE, "out/x.png"),
        "nested": [(1, Path(REMOTE, "a.txt")), PurePosixPath(REMOTE, "b.txt")],
        "relative": Path("out/x.png"),
        "elsewhere": Path("/etc/hostname"),
        "not_fetched": Path(REMOTE, "dir"),
        "prefix_only": Path(REMOTE + "x", "y"),
    }
    out = _round_trip(value, ["out/x.png", "a.txt", "b.txt"], tmp_path)
    assert out["png"] == tmp_path / "out/x.png"
    assert out["nested"] == [(1, tmp_path / "a.txt"), PurePosixPath(tmp_path / "b.txt")]
    assert type(out["nested"][1]) is PurePosixPath
    # untouched: relative paths (already right on both sides), paths outside the remote task
    # directory, and what did not come back (a directory, a look-alike prefix)
    assert out["relative"] == Path("out/x.png")
    assert out["elsewhere"] == Path("/etc/hostname")
    assert out["not_fetched"] == Path(REMOTE, "dir")
    assert out["prefix_only"] == Path(REMOTE + "x", "y")


def test_values_without_returned_files_are_left_byte_for_byte(tmp_path: Path) -> None:
    data = cloudpickle.dumps([Path(REMOTE, "x")])
    assert localize_result(data, {}, REMOTE, tmp_path) is data
    assert localize_result(data, {"files": ["other"]}, REMOTE, tmp_path) == data
    assert localize_result(None, {"files": ["x"]}, REMOTE, tmp_path) is None
    garbage = b"not a pickle"
    assert localize_result(garbage, {"files": ["x"]}, REMOTE, tmp_path) is garbage


def test_argument_paths_inside_the_pipeline_directory_move_to_the_remote_one(tmp_path: Path) -> None:
    import pickle

    from corral.transport.staging import staged_payload
    from corral.worker.execute import PythonPayload

    def task(*_: Any, **__: Any) -> None:
        return None

    args = ((Path(tmp_path, "in/a.csv"), [Path("rel.txt"), Path("/etc/hostname")]),
            {"where": Path(tmp_path), "n": 3})
    payload = PythonPayload("d", cloudpickle.dumps(task), cloudpickle.dumps(args))
    data = pickle.dumps(payload)
    staged: PythonPayload = pickle.loads(staged_payload(data, tmp_path, REMOTE))
    (a, (rel, other)), kwargs = cloudpickle.loads(staged.args)
    assert a == Path(REMOTE, "in/a.csv") and kwargs == {"where": Path(REMOTE), "n": 3}
    assert rel == Path("rel.txt") and other == Path("/etc/hostname")
    assert staged.func == payload.func
    # nothing to move: the very same bytes
    plain = pickle.dumps(PythonPayload("d", cloudpickle.dumps(task), cloudpickle.dumps(((1,), {}))))
    assert staged_payload(plain, tmp_path, REMOTE) is plain


def test_containers_keep_their_classes(tmp_path: Path) -> None:
    """Paths are found where the worker finds returned files (isinstance: subclasses too), and
    the rebuilt containers keep their classes."""
    from collections import OrderedDict, defaultdict, namedtuple

    from corral.transport.staging import move_paths

    pair = namedtuple("pair", "png n")
    remote = Path(REMOTE, "x.png")
    moved, changed = move_paths(pair(remote, 1), REMOTE, str(tmp_path), {"x.png"})
    assert changed and moved == pair(tmp_path / "x.png", 1) and type(moved) is pair
    ordered, _ = move_paths(OrderedDict(a=remote), REMOTE, str(tmp_path), {"x.png"})
    assert type(ordered) is OrderedDict and ordered["a"] == tmp_path / "x.png"
    nested, _ = move_paths(defaultdict(list, a=[remote]), REMOTE, str(tmp_path), {"x.png"})
    assert type(nested) is defaultdict and nested.default_factory is list
    assert nested["a"] == [tmp_path / "x.png"]
