"""The datapipe example end to end, against a loopback HTTP server (examples/datapipe)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import yaml

import corral

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "datapipe"
ITEMS = ["subj01", "subj02"]
ROWS = 20_000
SHARDS = 3


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"datapipe_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


make_dataset = _load("make_dataset")
serve = _load("serve")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    served = make_dataset.make_dataset(tmp_path / "served", ITEMS, rows=ROWS, seed=1)
    srv = serve.serve_in_thread(served)
    yield served, f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def _run(base_url: str, workdir: Path, dest: str = "site", **config: Any) -> corral.RunResult:
    pipe = corral.load_pipeline(EXAMPLE / "pipeline.py")
    params = {"base_url": base_url, "shards": SHARDS, "dest": dest}
    res = corral.run(pipe, params=params, workdir=workdir, source=str(EXAMPLE / "pipeline.py"),
                     **config)
    assert res.ok, res.errors
    return res


def _states(workdir: Path, run_id: str) -> dict[str, str]:
    return {t["name"]: t["state"] for t in corral.Client(workdir).run(run_id).tasks()}


def _check_outputs(served: Path, work: Path, site: Path | None = None) -> None:
    """Statistics against numpy, the metadata, the figure, and the page published to ``site``
    (default ``work/site``)."""
    deriv = work / "data" / "deriv"
    site = work / "site" if site is None else site
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
    index = (site / "index.html").read_text()
    assert "<title>Corral datapipe: subj01, subj02</title>" in index
    assert "<figcaption>Figure 1: distribution of the signal values" in index
    assert 'src="figure.html"' in index
    assert "<td>subj01</td><td>20000</td>" in index  # the statistics table
    assert (site / "figure.html").read_text() == figure


def test_resumable_download(server: tuple[Path, str], tmp_path: Path) -> None:
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


def test_datapipe_local_cache_and_partial_rerun(server: tuple[Path, str], tmp_path: Path) -> None:
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


def _require_cluster(kind: str, tool: str, probe: list[str]) -> None:
    """Skip unless ``tool`` is on PATH and ``probe`` answers (fail instead with
    CORRAL_REQUIRE_CLUSTERS=1), like ``require_cluster`` in tests/batch/conftest.py."""
    reason = None
    if shutil.which(tool) is None:
        reason = f"{tool} is not on PATH"
    else:
        try:
            proc = subprocess.run(probe, capture_output=True, text=True, timeout=15)  # noqa: S603
            if proc.returncode != 0:
                reason = f"{' '.join(probe)} failed: {proc.stderr.strip()[-200:]}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = f"{' '.join(probe)} did not answer: {exc}"
    if reason is None:
        return
    if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
        pytest.fail(f"{kind} cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
    pytest.skip(f"{kind} cluster not available: {reason}")


def _run_on_cluster(kind: str, url: str, served: Path, work: Path) -> None:
    res = _run(url, work, executor=kind, jobs=4)
    _check_outputs(served, work)
    assert set(_states(work, res.run_id).values()) == {"succeeded"}
    attempts = corral.Client(work).run(res.run_id).attempts()
    assert {a["executor"] for a in attempts} == {kind}
    assert all(a["native_id"] for a in attempts)  # every attempt was a scheduler job
    done = {a["task_id"] for a in attempts if a["state"] == "succeeded"}
    assert len(done) == 2 * len(ITEMS) + len(ITEMS) * SHARDS + 3  # every task ran on the cluster


@pytest.mark.slurm
def test_datapipe_slurm(server: tuple[Path, str], tmp_path: Path) -> None:
    _require_cluster("slurm", "sbatch", ["sinfo", "-h"])
    served, url = server
    _run_on_cluster("slurm", url, served, tmp_path / "work")


@pytest.mark.sge
def test_datapipe_sge(server: tuple[Path, str], tmp_path: Path) -> None:
    _require_cluster("sge", "qsub", ["qstat", "-f"])
    served, url = server
    _run_on_cluster("sge", url, served, tmp_path / "work")


# --------------------------------------------------------------------------- publish via rclone

def _need_rclone() -> str:
    rclone = shutil.which("rclone")
    if rclone is None:
        reason = "rclone is not on PATH (apt-get install rclone; scripts/rig/install-system-deps.sh)"
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"{reason}; required with CORRAL_REQUIRE_CLUSTERS=1")
        pytest.skip(reason)
    return rclone


@pytest.fixture
def rclone_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a ``corral run`` child process with an rclone remote ``corraltest`` of
    type ``local``, configured only by variables (RCLONE_CONFIG names a file that does not
    exist, which keeps the user's rclone.conf out).

    A child process, not ``corral.run`` here: the local executor forks Python tasks from a fork
    server started once per process, which keeps the environment of the first run in this
    pytest process, so variables set by a later test would not reach ``publish``."""
    _need_rclone()
    return {**os.environ, "RCLONE_CONFIG": str(tmp_path / "rclone.conf"),
            "RCLONE_CONFIG_CORRALTEST_TYPE": "local"}


def _corral_run(url: str, work: Path, dest: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    corral_cli = Path(sys.executable).with_name("corral")
    argv = [str(corral_cli), "run", str(EXAMPLE / "pipeline.py"), "--workdir", str(work), "-j", "2",
            "-q", "--base-url", url, "--shards", str(SHARDS), "--dest", dest]
    return subprocess.run(argv, capture_output=True, text=True, timeout=240,  # noqa: S603
                          env={**env, "COLUMNS": "500"})  # rich wraps at 80 columns otherwise


def test_is_remote() -> None:
    pipe = _load("pipeline")
    for dest in ["pub:/srv/www", "my remote:www", ":local:/tmp/x", "s3.eu:bucket/dir"]:
        assert pipe.is_remote(dest), dest
    for dest in ["site", "/tmp/a:b", "./a:b", "C:\\www", "-x:y"]:
        assert not pipe.is_remote(dest), dest


def test_publish_to_rclone_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = _load("pipeline")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "index.html").write_text("<p>x</p>")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no rclone anywhere
    with pytest.raises(RuntimeError, match="'pub:www' is an rclone remote but rclone is not installed"):
        pipe.publish_to(staging, "pub:www")
    monkeypatch.undo()
    _need_rclone()
    monkeypatch.setenv("RCLONE_CONFIG", str(tmp_path / "rclone.conf"))
    with pytest.raises(RuntimeError) as info:  # a remote that is not configured anywhere
        pipe.publish_to(staging, f"corralnosuchremote:{tmp_path / 'out'}")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("publish: rclone copy to 'corralnosuchremote:")
    assert "failed (exit 1)" in msg and "didn't find section in config file" in msg, msg
    assert not (tmp_path / "out").exists()


def test_datapipe_publish_to_rclone_remote(server: tuple[Path, str], tmp_path: Path,
                                           rclone_env: dict[str, str]) -> None:
    served, url = server
    work, remote_dir = tmp_path / "work", tmp_path / "remote" / "www"
    dest = f"corraltest:{remote_dir}"
    proc = _corral_run(url, work, dest, rclone_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"result: {dest!r}" in proc.stdout
    assert not (work / "site").exists()
    assert sorted(p.name for p in remote_dir.iterdir()) == ["figure.html", "index.html"]
    staged = work / "data" / "deriv" / "site"
    for name in ("index.html", "figure.html"):
        assert (remote_dir / name).read_bytes() == (staged / name).read_bytes()
    _check_outputs(served, work, site=remote_dir)

    # an unconfigured remote: only publish runs again (dest is in its key) and fails in one line
    proc = _corral_run(url, work, "corralnosuchremote:www", rclone_env)
    assert proc.returncode != 0
    run = corral.Client(work).run("latest")
    states = {t["name"]: t["state"] for t in run.tasks()}
    assert states.pop("publish") == "failed" and set(states.values()) == {"cached"}
    out = proc.stdout + proc.stderr
    shown = [ln.strip() for ln in out.splitlines() if "publish: failed:" in ln]
    assert len(shown) == 1, out  # the CLI's failure summary: one line
    expect = ("RuntimeError: publish: rclone copy to 'corralnosuchremote:www' failed (exit 1): "
              'Failed to create file system for "corralnosuchremote:www": didn\'t find section '
              "in config file")
    assert shown[0] == f"✗ publish: failed: {expect}", out
    (attempt,) = [a for a in run.attempts() if a["state"] == "failed"]
    assert (attempt["error"] or "").strip().splitlines()[-1] == expect  # after the traceback
