"""The datapipe example end to end, against a loopback HTTP server (examples/datapipe)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import corral

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "datapipe"
ITEMS = ["subj01", "subj02"]
ROWS = 20_000
SHARDS = 3


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"datapipe_{name}", EXAMPLE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


make_dataset = _load("make_dataset")
serve = _load("serve")


@pytest.fixture
def server(tmp_path):
    served = make_dataset.make_dataset(tmp_path / "served", ITEMS, rows=ROWS, seed=1)
    srv = serve.serve_in_thread(served)
    yield served, f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _run(base_url: str, workdir: Path, **config):
    pipe = corral.load_pipeline(EXAMPLE / "pipeline.py")
    params = {"base_url": base_url, "shards": SHARDS, "dest": "site"}
    res = corral.run(pipe, params=params, workdir=workdir, source=str(EXAMPLE / "pipeline.py"),
                     **config)
    assert res.ok, res.errors
    return res


def _states(workdir: Path, run_id: str) -> dict[str, str]:
    return {t["name"]: t["state"] for t in corral.Client(workdir).run(run_id).tasks()}


def _check_outputs(served: Path, work: Path) -> None:
    deriv = work / "data" / "deriv"
    summary = json.loads((deriv / "summary.json").read_text())
    assert sorted(summary) == ITEMS
    for i, item in enumerate(ITEMS):
        table = np.loadtxt(served / f"{item}.csv", delimiter=",", skiprows=1)
        sig = table[:, 1]
        s = summary[item]
        assert s["n"] == sig.size == ROWS
        assert s["mean"] == pytest.approx(sig.mean(), rel=1e-9, abs=1e-12)
        assert s["std"] == pytest.approx(sig.std(), rel=1e-7)
        assert s["min"] == sig.min() and s["max"] == sig.max()
        assert sum(s["hist"]) == ROWS
        assert len(s["shards"]) == SHARDS
        for sh in s["shards"]:  # each shard's mean is the mean of its rows
            a, b = sh["rows"]
            assert sh["mean"] == pytest.approx(sig[a:b].mean(), rel=1e-9, abs=1e-12)
        assert s["peak_hz"] == pytest.approx(5.0 * (i + 1), abs=0.1)  # the generated frequency
        meta = yaml.safe_load((deriv / item / "meta.yaml").read_text())
        assert meta["item"] == item
        assert meta["shape"] == [ROWS, 2]
        assert meta["columns"] == ["time", "signal"]
        assert meta["units"] == {"time": "s", "signal": "mV"}
        assert meta["source_url"].endswith(f"/{item}.csv")
        sums = dict(reversed(line.split()) for line in serve.sha256sums(served).decode().splitlines())
        assert meta["sha256"] == sums[f"{item}.csv"]
        assert sorted(p.name for p in (deriv / item / "shards").iterdir()) == \
            [f"{k}.json" for k in range(SHARDS)]
    figure = (deriv / "figure.html").read_text()
    assert all(item in figure for item in ITEMS)
    index = (work / "site" / "index.html").read_text()
    assert "<title>Corral datapipe: subj01, subj02</title>" in index
    assert "<figcaption>Figure 1: distribution of the signal values" in index
    assert 'src="figure.html"' in index
    assert (work / "site" / "figure.html").read_text() == figure


def test_resumable_download(server, tmp_path):
    served, url = server
    pipe = _load("pipeline")
    sums = pipe.fetch_manifest(url)
    dest = tmp_path / "dl" / "subj01.csv"
    dest.parent.mkdir()
    body = (served / "subj01.csv").read_bytes()
    (dest.parent / "subj01.csv.part").write_bytes(body[:1000])  # an interrupted download
    assert pipe.fetch_file(f"{url}/subj01.csv", dest, sums["subj01.csv"]) == dest
    assert dest.read_bytes() == body and not (dest.parent / "subj01.csv.part").exists()
    (dest.parent / "x.part").write_bytes(b"garbage")  # wrong prefix: checksum refuses it
    with pytest.raises(ValueError, match="SHA-256"):
        pipe.fetch_file(f"{url}/subj01.csv", dest.parent / "x", sums["subj01.csv"])


def test_datapipe_local_cache_and_partial_rerun(server, tmp_path):
    served, url = server
    work = tmp_path / "work"
    first = _run(url, work, jobs=2)
    _check_outputs(served, work)
    assert all(s == "succeeded" for s in _states(work, first.run_id).values())

    again = _run(url, work, jobs=2)  # nothing changed: everything cached, no attempt made
    assert set(_states(work, again.run_id).values()) == {"cached"}
    assert corral.Client(work).run(again.run_id).attempts() == []

    # subj02 changes on the server: only its branch and the gather/figure/page rerun
    make_dataset.make_dataset(served, ITEMS, rows=ROWS, seed=2, only=["subj02"])
    third = _run(url, work, jobs=2)
    states = _states(work, third.run_id)
    item1 = {n for n in states if n.endswith("[0]") and not n.startswith("analyze")}
    item1 |= {n for n in states if n.startswith("analyze[")}  # first item's shards
    item2 = {n for n in states if n.endswith("[1]") and not n.startswith("analyze")}
    item2 |= {n for n in states if n.startswith("analyze~1[")}
    assert len(item1) == len(item2) == 2 + SHARDS
    assert {states[n] for n in item1} == {"cached"}, states
    assert {states[n] for n in item2 | {"summarize", "visualize", "publish"}} == {"succeeded"}
    attempts = corral.Client(work).run(third.run_id).attempts()
    assert len(attempts) == len(item2) + 3
    _check_outputs(served, work)


@pytest.mark.slurm
def test_datapipe_slurm(server, tmp_path):
    if shutil.which("sbatch") is None:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail("sbatch required (CORRAL_REQUIRE_CLUSTERS=1) but not found")
        pytest.skip("sbatch not found: no SLURM cluster")
    served, url = server
    work = tmp_path / "work"
    res = _run(url, work, executor="slurm", jobs=4)
    _check_outputs(served, work)
    attempts = corral.Client(work).run(res.run_id).attempts()
    assert attempts and {a["executor"] for a in attempts} == {"slurm"}
