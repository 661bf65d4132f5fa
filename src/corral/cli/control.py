"""Acting on runs: ``corral pause``, ``corral cancel`` (with orphaned cluster jobs) and
``corral clean``. ``corral resume`` runs in the foreground: see :mod:`.run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import DbOpt, JsonOpt, WorkdirOpt, app, handled, open_store, say


def _control(run_id: str, workdir: Path, db: str | None, control: str, verb: str,
             as_json: bool) -> None:
    from corral.engine.lifecycle import request_control

    with handled():
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        request_control(store, run_row["id"], control)
    say(as_json, {"run": run_row["id"], "control": control}, f"{verb} run {run_row['id']}")


@app.command()
def pause(run_id: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None,
          as_json: JsonOpt = False) -> None:
    """Stop releasing new tasks (running ones finish); corral resume continues.

    Example: corral pause latest"""
    _control(run_id, workdir, db, "pause", "pausing", as_json)


@app.command()
def cancel(run_id: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None,
           as_json: JsonOpt = False) -> None:
    """Cancel a run: its engine cancels running tasks (on clusters too). A run without a live
    engine has its recorded cluster jobs cancelled directly.

    Example: corral cancel latest"""
    from corral.engine.lifecycle import cancel_run

    with handled():
        done = cancel_run(open_store(workdir, db), run_id)
    if done.requested:
        text = f"cancelling run {done.run_id}"
    else:
        text = f"cancelled run {done.run_id}" + (f" ({done.jobs} cluster jobs)" if done.jobs else "")
    say(as_json, {"run": done.run_id, "requested": done.requested, "cluster_jobs": done.jobs}, text)


@app.command()
def clean(workdir: WorkdirOpt = Path("."), db: DbOpt = None,
          keep_runs: Annotated[int | None, typer.Option(help="Keep results used by the newest N runs; drop older runs.")] = None,  # noqa: E501
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go.")] = False,
          min_age: Annotated[float | None, typer.Option("--min-age", help="Spare blobs written or reused less than this many seconds ago (runs in progress write blobs just before recording them); default: an hour.", show_default=False)] = None,  # noqa: E501
          as_json: JsonOpt = False) -> None:
    """Garbage-collect the cache: unreferenced blobs, and results of old runs with --keep-runs.

    Example: corral clean --keep-runs 5 --dry-run"""
    with handled():
        store = open_store(workdir, db)
        stats = (store.collect_garbage(keep_runs, dry_run) if min_age is None
                 else store.collect_garbage(keep_runs, dry_run, min_age))
    verb = "would remove" if dry_run else "removed"
    say(as_json, {**stats, "dry_run": dry_run},
        f"{verb} {stats['results']} results and {stats['blobs']} blobs ({stats['bytes'] / 2**20:.1f} MiB)")
