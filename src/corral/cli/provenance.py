"""Commands about what ran and what it made: report, lineage, why, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corral.errors import UsageError

from . import views
from .common import DbOpt, JsonOpt, WorkdirOpt, app, console, handled, open_store, say


@app.command()
def report(run_id: Annotated[str, typer.Argument(help="Run id (or 'latest').")] = "latest",
           output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
           workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Write a self-contained HTML report: summary, timeline, critical path, distributions,
    task table, failures with log tails, and the pipeline graph.

    Example: corral report latest -o report.html"""
    from corral.report.html import write_report

    with handled():
        store = open_store(workdir, db)
        rid = store.get_run(run_id)["id"]
        path = write_report(store, rid, output)
    say(as_json, {"run": rid, "report": str(Path(path).resolve())}, f"report written to {path}")


@app.command()
def lineage(path: Annotated[Path, typer.Argument(help="A file a task produced.")],
            workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show what produced a file: tasks, code, parameters, back to the raw inputs.

    Example: corral lineage results/summary.csv"""
    from corral.report.lineage import lineage as build
    from corral.report.lineage import lineage_tree

    with handled():
        root = build(open_store(workdir, db), path)
    if as_json:
        views.print_json(console, root.to_json())
    else:
        console.print(lineage_tree(root))


@app.command()
def why(run_id: Annotated[str, typer.Argument(help="Run id (or 'latest').")],
        task: Annotated[str, typer.Argument(help="Task name.")],
        workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Say whether a task ran or was reused, and which code, parameter or input change made it run.

    Example: corral why latest total"""
    from corral.report.compare import explain_task
    from corral.report.terminal import explanation_renderable

    with handled():
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        name = store.find_task(run_row["id"], task)["name"]
        exp = explain_task(store, run_row["id"], name)
    if as_json:
        views.print_json(console, exp.to_json())
    else:
        console.print(explanation_renderable(exp))


@app.command()
def export(run_id: Annotated[str, typer.Argument(help="Run id (or 'latest').")] = "latest",
           ro_crate: Annotated[Path | None, typer.Option("--ro-crate", help="Write a Workflow Run RO-Crate into this directory.")] = None,  # noqa: E501
           fmt: Annotated[str | None, typer.Option("--format", help="Write a standalone script: sbatch or sge.")] = None,  # noqa: E501
           output: Annotated[Path, typer.Option("--output", "-o", help="Script path for --format.")] = Path("pipeline.sh"),  # noqa: E501
           prov: Annotated[Path | None, typer.Option("--prov", help="Write W3C PROV-JSON to this file.")] = None,
           workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Export a run's provenance (RO-Crate, PROV-JSON) or the run as a standalone batch script.

    Example: corral export latest --ro-crate crate/ --prov prov.json"""
    with handled():
        if not (ro_crate or prov or fmt):
            raise UsageError("choose what to export: --format sbatch|sge, --ro-crate DIR or --prov FILE")
        written = _export(run_id, workdir, db, fmt, output, ro_crate, prov)
    lines = [f"{EXPORT_LABELS[key]} written to {path}" for key, path in written[1:]]
    data = {key: path if key == "run" else str(Path(path).resolve()) for key, path in written}
    say(as_json, data, "\n".join(lines))


EXPORT_LABELS = {"script": "script", "ro_crate": "RO-Crate", "prov": "PROV-JSON"}


def _export(run_id: str, workdir: Path, db: str | None, fmt: str | None, output: Path,
            ro_crate: Path | None, prov: Path | None) -> list[tuple[str, str]]:
    """Write what ``corral export`` asks for; returns ("run", id), then (what, path) pairs."""
    store = open_store(workdir, db)
    rid = store.get_run(run_id)["id"]
    written = [("run", rid)]
    if fmt:
        from corral.export import export_run

        written.append(("script", str(export_run(workdir, rid, output, fmt=fmt, db=db))))
    if ro_crate or prov:
        from corral.report import rocrate

        if ro_crate:
            rocrate.export_ro_crate(store, rid, ro_crate)
            written.append(("ro_crate", str(ro_crate)))
        if prov:
            rocrate.export_prov(store, rid, prov)
            written.append(("prov", str(prov)))
    return written
