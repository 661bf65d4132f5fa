from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from corral.errors import UsageError
from corral.report.rocrate import crate_summary, export_prov, export_ro_crate
from corral.store import Store

from .report_rows import RunBuilder, build_galaxy

WFRUN = "https://w3id.org/ro/wfrun/workflow/0.5"


@pytest.fixture
def files_run(store: Store, tmp_path: Path) -> RunBuilder:
    """The galaxy run with a real pipeline file, one output file and the raw input on disk."""
    (tmp_path / "pipe.py").write_text("import corral\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plot.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw.csv").write_text("a,b\n1,2\n")
    b = build_galaxy(store, tmp_path)
    store.update_run("run-a", source=str(tmp_path / "pipe.py"))
    return b


def graph(crate_dir: Path) -> dict[str, dict[str, Any]]:
    meta = json.loads((crate_dir / "ro-crate-metadata.json").read_text())
    return {e["@id"]: e for e in meta["@graph"]}


def ids(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [v["@id"] for v in items]


def test_crate_structure(store: Store, tmp_path: Path, files_run: RunBuilder) -> None:
    out = export_ro_crate(store, "run-a", tmp_path / "crate",
                          author={"@id": "https://orcid.org/0000-0002-1825-0097", "name": "A. Uthor"})
    g = graph(out)
    root = g["./"]
    assert WFRUN in ids(root["conformsTo"])
    wf = g[root["mainEntity"]["@id"]]
    assert wf["@id"] == "workflow/pipe.py" and (out / "workflow" / "pipe.py").exists()
    assert set(wf["@type"]) == {"File", "SoftwareSourceCode", "ComputationalWorkflow"}
    assert g[wf["programmingLanguage"]["@id"]]["name"] == "Python"
    run = g["#run-run-a"]
    assert run["@type"] == "CreateAction" and run["instrument"]["@id"] == wf["@id"]
    assert run["startTime"].startswith("2023-11-14T") and run["agent"]["@id"].startswith("https://orcid")
    assert "outputs/out/plot.png" in ids(run["result"])
    assert (out / "outputs" / "out" / "plot.png").read_bytes() == b"\x89PNG fake"
    assert (out / "inputs" / "data" / "raw.csv").exists()
    assert {"inputs/data/raw.csv", "#pv-n"} <= set(ids(run["object"]))
    n = g["#param-n"]
    assert n["@type"] == "FormalParameter" and n["additionalType"] == "Integer"
    assert g["#pv-n"]["value"] == 4 and g["#pv-n"]["exampleOfWork"]["@id"] == "#param-n"
    # one CreateAction per task that ran, none for the reused download
    tasks = [e for e in g.values() if e["@id"].startswith("#task-run-")]
    assert len(tasks) == 8
    roots0 = next(e for e in tasks if e["name"] == "Run of task roots[0]")
    assert g[roots0["instrument"]["@id"]]["@type"] == "SoftwareApplication"
    assert "node1" in roots0["description"] and "peak memory 614.4M" in roots0["description"]
    flaky = next(e for e in tasks if e["name"] == "Run of task flaky")
    assert flaky["actionStatus"] == "http://schema.org/FailedActionStatus"
    assert flaky["error"] == "ValueError: bad value"
    # files not on disk are referenced, not copied
    assert g[f"file://{tmp_path}/out/merged.csv"]["@type"] == "File"
    assert crate_summary(out)["CreateAction"] == 9


def test_crate_reads_back_with_rocrate(store: Store, tmp_path: Path, files_run: RunBuilder) -> None:
    from rocrate.rocrate import ROCrate

    out = export_ro_crate(store, "run-a", tmp_path / "crate")
    crate = ROCrate(out)
    assert crate.mainEntity.id == "workflow/pipe.py"
    actions = crate.get_by_type("CreateAction")
    assert len(actions) == 9
    assert any(a.id == "#run-run-a" for a in actions)


def test_crate_destination_must_be_new(store: Store, tmp_path: Path, files_run: RunBuilder) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UsageError, match="choose a new directory"):
        export_ro_crate(store, "run-a", tmp_path / "full")


def test_zipped_crate(store: Store, tmp_path: Path, files_run: RunBuilder) -> None:
    import zipfile

    out = export_ro_crate(store, "run-a", tmp_path / "crate.zip")
    assert "ro-crate-metadata.json" in zipfile.ZipFile(out).namelist()


def _offline_validator(monkeypatch: pytest.MonkeyPatch) -> Any:
    """roc-validator, with the RO-Crate 1.1 JSON-LD context served locally (no network here):
    the context bundled with the rocrate library (1.3, a superset) with the 1.1 Bioschemas IRIs."""
    services = pytest.importorskip("rocrate_validator.services")
    import rocrate
    from rocrate_validator.utils import document_loader, http

    ctx = json.loads((Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_text())
    context = dict(ctx["@context"])
    bio = "https://bioschemas.org/"
    context.update({"ComputationalWorkflow": bio + "ComputationalWorkflow",
                    "FormalParameter": bio + "FormalParameter",
                    "input": bio + "ComputationalWorkflow#input",
                    "output": bio + "ComputationalWorkflow#output"})
    doc = {"@context": context}

    class Response:
        status_code = 200
        headers = {"Content-Type": "application/ld+json"}
        text = json.dumps(doc)
        from_cache = True

        def json(self) -> Any:
            return doc

    def fetch(url: str) -> Any:
        if url.startswith("https://w3id.org/ro/crate/1.1/context"):
            return doc
        raise RuntimeError(f"offline test: {url}")

    def get(self: Any, url: str, **kwargs: Any) -> Any:
        if url.startswith("https://w3id.org/ro/crate/1.1/context"):
            return Response()
        return http.HttpRequester.__getattr__(self, "get")(url, **kwargs)

    monkeypatch.setattr(document_loader, "_fetch_json_ld", fetch)
    monkeypatch.setattr(http.HttpRequester, "get", get, raising=False)
    return services


def test_crate_passes_roc_validator(
    store: Store, tmp_path: Path, files_run: RunBuilder, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _offline_validator(monkeypatch)
    from rocrate_validator.models import Severity, ValidationSettings

    out = export_ro_crate(store, "run-a", tmp_path / "crate")
    for severity in (Severity.REQUIRED, Severity.RECOMMENDED):
        settings = ValidationSettings(
            rocrate_uri=str(out), profile_identifier="workflow-run-crate-0.5",
            requirement_severity=severity, skip_availability_check=True, no_cache=True,
        )
        result = services.validate(settings)
        issues = [f"{i.severity.name} {i.message}" for i in result.get_issues()]
        if severity == Severity.REQUIRED:
            assert result.passed(), issues
        else:
            # What is left at RECOMMENDED level is outside what a run records: a publisher,
            # an author/agent (only when given), formats of unknown file types, files that are
            # referenced (not on this machine), web addresses of task functions, and a result
            # of the failed task.
            allowed = ("publisher", "encodingFormat", "is not available", "author", "agent",
                       "Application SHOULD have a url", "SoftwareApplication id SHOULD be an "
                       "absolute URI", "The Action SHOULD have a result")
            left = [i for i in issues if not any(a in i for a in allowed)]
            assert left == [], "\n".join(sorted(set(left)))


def test_prov_export(store: Store, tmp_path: Path, galaxy: RunBuilder) -> None:
    from prov.model import ProvDocument

    path = export_prov(store, "run-a", tmp_path / "prov" / "run.json")
    doc = ProvDocument.deserialize(source=str(path), format="json")
    data = json.loads(path.read_text())
    acts = data["activity"]
    assert len(acts) == 9  # one activity per attempt
    roots0 = next(v for k, v in acts.items() if "roots%5B0%5D" in k)
    assert roots0["corral:task"] == "roots[0]" and roots0["prov:startTime"].startswith("2023-11-14")
    assert any(v["prov:label"] == "node2" for v in data["agent"].values())
    plot_file = next(k for k, v in data["entity"].items() if v.get("prov:location", "").endswith("plot.png"))
    gen = [v for v in data["wasGeneratedBy"].values() if v["prov:entity"] == plot_file]
    assert len(gen) == 1 and "plot-1" in gen[0]["prov:activity"]
    used = [v for v in data["used"].values() if "prep-1" in v["prov:activity"]]
    assert {data["entity"][u["prov:entity"]]["prov:label"] for u in used} >= {
        str(tmp_path / "data" / "raw.csv")}
    assert len(list(doc.get_records())) > 20  # typed Iterable (a list when unfiltered)
