"""Commands about what ran and what it made: report, lineage, why, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from corral.errors import CorralError, UsageError

from . import views
from .app import DbOpt, JsonOpt, WorkdirOpt, app, console, exit_code_for, fail, open_store


@app.command()
def report(run_id: Annotated[str, typer.Argument(help="Run id (or 'latest').")] = "latest",
           output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")] = Path("report.html"),
           workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Write a self-contained HTML report: summary, timeline, critical path, distributions,
    task table, failures with log tails, and the pipeline graph."""
    from corral.report.html import write_report

    try:
        store = open_store(workdir, db)
        path = write_report(store, store.get_run(run_id)["id"], output)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    console.print(f"report written to {path}", markup=False)


@app.command()
def lineage(path: Annotated[Path, typer.Argument(help="A file a task produced.")],
            workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Show what produced a file: tasks, code, parameters, back to the raw inputs."""
    from corral.report.lineage import lineage as build
    from corral.report.lineage import lineage_tree

    try:
        root = build(open_store(workdir, db), path)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    if as_json:
        views.print_json(console, root.to_json())
    else:
        console.print(lineage_tree(root))


@app.command()
def why(run_id: Annotated[str, typer.Argument(help="Run id (or 'latest').")],
        task: Annotated[str, typer.Argument(help="Task name.")],
        workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Say whether a task ran or was reused, and which code, parameter or input change made it run."""
    from corral.report.compare import explain_task
    from corral.report.terminal import explanation_renderable

    try:
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        name = store.find_task(run_row["id"], task)["name"]
        exp = explain_task(store, run_row["id"], name)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
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
           workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Export a run's provenance (RO-Crate, PROV-JSON)."""
    try:
        if not (ro_crate or prov or fmt):
            raise UsageError("choose what to export: --format sbatch|sge, --ro-crate DIR or --prov FILE")
        if fmt:
            from corral.export import export_run

            path = export_run(workdir, run_id, output, fmt=fmt, db=db)
            console.print(f"script written to {path}", markup=False)
            if not (ro_crate or prov):
                return
        from corral.report import rocrate

        store = open_store(workdir, db)
        rid = store.get_run(run_id)["id"]
        if ro_crate:
            rocrate.export_ro_crate(store, rid, ro_crate)
            console.print(f"RO-Crate written to {ro_crate}", markup=False)
        if prov:
            rocrate.export_prov(store, rid, prov)
            console.print(f"PROV-JSON written to {prov}", markup=False)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
