"""Reports of real runs made by the engine (local executor)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

corral = pytest.importorskip("corral.api")

PIPE = '''
from pathlib import Path
from corral import each, task, pipeline, shell

@task
def make(n: int) -> list[int]:
    return list(range(n))

@task
def square(x: int) -> int:
    return x * x

@task
def total(xs: list[int], scale: int) -> int:
    return sum(xs) * scale

@pipeline
def squares(n: int = 4, scale: int = 1):
    t = total(square.map(x=each(make(n))), scale)
    up = shell("tr a-z A-Z < {input} > {output}", inputs="words.txt", outputs="upper.txt",
               name="upper")
    return t, up
'''


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, str]:
    """Two runs: the second changes ``scale``, so only ``total`` reruns."""
    from corral.store import Store

    wd = tmp_path / "wd"
    wd.mkdir()
    monkeypatch.chdir(wd)
    (wd / "words.txt").write_text("hello world\n")
    source = tmp_path / "squares.py"
    source.write_text(textwrap.dedent(PIPE))
    pipe = corral.load_pipeline(source)
    first = corral.run(pipe, {"n": 4}, workdir=wd, jobs=2)
    second = corral.run(pipe, {"n": 4, "scale": 2}, workdir=wd, jobs=2)
    assert first.ok and second.ok
    store = Store.open(wd)
    ids = [r["id"] for r in store.list_runs()]
    store.close()
    return wd, ids[1], ids[0]


def test_reports_of_engine_runs(runs: tuple[Path, str, str], tmp_path: Path) -> None:
    from corral.report.compare import compare_runs, explain_task
    from corral.report.html import write_report
    from corral.report.lineage import lineage
    from corral.report.metrics import run_metrics
    from corral.report.rocrate import export_prov, export_ro_crate
    from corral.store import Store

    wd, first, second = runs
    store = Store.open(wd)
    try:
        m = run_metrics(store, first)
        assert m.summary.n_tasks >= 6 and m.summary.cpu_hours >= 0
        assert m.critical_path.tasks and m.summary.wall is not None
        assert m.summary.states.get("succeeded", 0) >= 6
        html = write_report(store, first, tmp_path / "report.html").read_text()
        assert 'id="timeline"' in html and "squares" in html

        changes = {c.name: c for c in compare_runs(store, first, second).changes}
        assert changes["total"].status == "rerun"
        # positional arguments are recorded as arg0, arg1 ... by the engine today
        assert [r.kind for r in changes["total"].reasons] == ["params"], changes["total"]
        assert changes["total"].reasons[0].message.endswith(": 1 → 2")
        assert changes["make"].status == "reused"
        why = explain_task(store, second, "total")
        assert why.outcome == "ran" and why.summary.endswith(f": 1 → 2 (compared with run {first})")
        assert explain_task(store, second, "make").outcome == "reused"

        tree = lineage(store, wd / "upper.txt")
        assert tree.produced_by is not None and tree.produced_by.name == "upper"
        assert any(f.raw and f.path.endswith("words.txt") for f in tree.produced_by.inputs)

        crate = export_ro_crate(store, first, tmp_path / "crate")
        meta = json.loads((crate / "ro-crate-metadata.json").read_text())
        assert any(e.get("@type") == "CreateAction" for e in meta["@graph"])
        assert (crate / "outputs").exists()
        prov = json.loads(export_prov(store, first, tmp_path / "prov.json").read_text())
        assert prov["activity"] and prov["wasGeneratedBy"]
        env = store.get_run(first)["environment"]
        assert env and env["python"] and env["packages"]
    finally:
        store.close()
