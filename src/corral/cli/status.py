"""Looking at runs: ``corral runs``, ``corral status`` (``--watch``, ``--metrics``) and
``corral logs``."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from corral.errors import UsageError
from corral.states import TERMINAL_RUN_STATES, RunState

if TYPE_CHECKING:
    from corral.store import Store

from . import views
from .common import (
    EXIT_USAGE,
    DbOpt,
    JsonOpt,
    TsvOpt,
    WideOpt,
    WorkdirOpt,
    app,
    console,
    fail,
    handled,
    open_reader,
    open_store,
    print_json,
)
from .layout import interactive
from .plainparams import PlainParamsCommand
from .statusview import big_status_view, counted_in_sql, page_view, run_counts, status_view


@app.command(cls=PlainParamsCommand)  # no pydantic to import: see .plainparams
def runs(workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
         limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
         compare: Annotated[tuple[str, str] | None, typer.Option("--compare", help="Compare two runs: A B.")] = None,
         wide: WideOpt = False, tsv: TsvOpt = False) -> None:
    """List runs, newest first (or compare two with --compare A B).

    Example: corral runs --limit 5"""
    with handled():
        reader = None if compare else open_reader(workdir, db)
        if reader is not None:
            with closing(reader):
                rows = reader.list_runs(limit)
        else:
            store = open_store(workdir, db)
            if compare:
                _compare(store, compare, as_json)
                return
            rows = store.list_runs(limit)
    if as_json:
        views.print_json(console, rows)
    else:
        views.runs_table(console, rows, wide, tsv)


def _compare(store: Store, pair: tuple[str, str], as_json: bool) -> None:
    from corral.report import compare as cmp
    from corral.report import terminal

    a, b = (store.get_run(x)["id"] for x in pair)
    diff = cmp.compare_runs(store, a, b)
    if as_json:
        views.print_json(console, diff.to_json())
    else:
        console.print(terminal.comparison_renderable(diff))


@app.command()
def status(run_id: Annotated[str, typer.Argument(help="Run id (or prefix, or 'latest').")] = "latest",
           workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
           metrics: Annotated[bool, typer.Option("--metrics", help="Run metrics and recommendations.")] = False,
           limit: Annotated[int, typer.Option(help="Tasks shown (0: all).")] = 50,
           watch: Annotated[bool, typer.Option("--watch", help="Refresh until the run ends; exit 0 if it succeeded, 1 otherwise.")] = False,  # noqa: E501
           interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between refreshes (--watch).")] = 2.0,  # noqa: E501
           offset: Annotated[int | None, typer.Option("--offset", min=0, help="List the tasks one by one from the N-th (0: the first), --limit at a time.")] = None,  # noqa: E501
           wide: WideOpt = False, tsv: TsvOpt = False) -> None:
    """Show a run and its tasks (state, duration, peak memory, cached or not).

    A run with more tasks than --limit shows each map as one row with its counts by state;
    --offset pages through its tasks one by one.

    Example: corral status latest --metrics"""
    with handled():
        if offset is not None and (watch or metrics):
            raise UsageError("--offset pages through a run's tasks; it does not go with --watch "
                             "or --metrics: leave one of them out")
        if offset is not None:
            _page(run_id, workdir, db, offset, limit, as_json, wide, tsv)
            return
        if not (watch or metrics) and _ended_run_read(run_id, workdir, db, limit, as_json, wide, tsv):
            return
        store = open_store(workdir, db)
        if watch:
            if metrics:
                raise UsageError("--watch and --metrics do not go together; watch the run, then "
                                 "run `corral status RUN --metrics`")
            from .watch import watch_run

            code = watch_run(store, store.get_run(run_id)["id"], limit, as_json, interval, wide)
        else:
            from corral.engine.lifecycle import reconcile

            run_row = reconcile(store, run_id)
            if not (as_json or tsv or metrics) and counted_in_sql(run_row, limit):
                big_status_view(console, store, run_row, limit, wide)  # counted in SQL, not loaded
                return
            rows = views.task_rows(store.tasks(run_row["id"]), store.attempts(run_row["id"]))
            if metrics:
                _metrics(store, run_row["id"], as_json, wide)
                return
    if watch:
        raise typer.Exit(code)
    if as_json:
        views.print_json(console, {"run": run_row, "tasks": rows})
    else:
        status_view(console, run_row, rows, limit, wide, tsv)


def _ended_run_read(run_id: str, workdir: Path, db: str | None, limit: int, as_json: bool,
                    wide: bool, tsv: bool) -> bool:
    """Show an ended run read without SQLAlchemy (:mod:`corral.store.reader`), if it can be:
    nothing is left to reconcile in an ended run, and one of at most ``limit`` tasks (or shown
    whole) needs no counting in SQL. False: the full store must do it."""
    reader = open_reader(workdir, db)
    if reader is None:
        return False
    with closing(reader):
        run_row = reader.get_run(run_id)
        if RunState(run_row["state"]) not in TERMINAL_RUN_STATES:
            return False
        if not (as_json or tsv) and counted_in_sql(run_row, limit):
            if reader.task_groups(run_row["id"]) is None:
                return False  # ended before runs were summarised: the store counts its tasks
            big_status_view(console, reader, run_row, limit, wide)  # its summary: a few rows
            return True
        rows = views.task_rows(reader.tasks(run_row["id"]), reader.attempts(run_row["id"]))
    if as_json:
        views.print_json(console, {"run": run_row, "tasks": rows})
    else:
        status_view(console, run_row, rows, limit, wide, tsv)
    return True


def _page(run_id: str, workdir: Path, db: str | None, offset: int, limit: int, as_json: bool,
          wide: bool, tsv: bool) -> None:
    """``status --offset``: the run's counts and ``limit`` of its tasks from the ``offset``-th;
    an ended run's from its summary without SQLAlchemy when it can."""
    groups = None
    reader = open_reader(workdir, db)
    if reader is not None:
        with closing(reader):
            run_row = reader.get_run(run_id)
            if RunState(run_row["state"]) in TERMINAL_RUN_STATES:
                groups = reader.task_groups(run_row["id"])
            if groups is not None:
                tasks, attempts = reader.task_page(run_row["id"], offset, limit)
    if groups is None:
        from corral.engine.lifecycle import reconcile

        store = open_store(workdir, db)
        run_row = reconcile(store, run_id)
        groups = store.task_groups(run_row["id"])
        tasks, attempts = store.task_page(run_row["id"], offset, limit)
    rows = views.task_rows(tasks, attempts)
    if as_json:
        views.print_json(console, {"run": run_row, "offset": offset, "tasks": rows})
    elif tsv:
        status_view(console, run_row, rows, 0, wide, tsv=True)
    else:
        page_view(console, run_row, run_counts(groups), rows, offset, wide)


def _metrics(store: Store, run_id: str, as_json: bool, wide: bool) -> None:
    from corral.report import metrics as rm
    from corral.report import terminal

    m = rm.run_metrics(store, run_id)
    if as_json:
        views.print_json(console, m.to_json(details=True))
    else:
        plain = not interactive(console)
        console.print(terminal.metrics_renderable(m, console=console, wide=wide, plain=plain),
                      crop=False, soft_wrap=plain)


@app.command(cls=PlainParamsCommand)
def logs(run_id: Annotated[str, typer.Argument(help="Run id.")],
         task: Annotated[str, typer.Argument(help="Task name (or unique prefix).")],
         attempt: Annotated[int | None, typer.Option(help="Attempt number (default: all).")] = None,
         full: Annotated[bool, typer.Option("--full", help="Whole logs (default: their end).")]
         = False,
         workdir: WorkdirOpt = Path("."), db: DbOpt = None,
         as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output: each attempt with the end of its logs (also with --full) and their paths.")] = False) -> None:  # noqa: E501
    """Show a task's output, error output and traceback, attempt by attempt (the last lines
    of each log; --full for all of them).

    Example: corral logs latest 'measure[3]' --attempt 2"""
    with handled():
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        row = store.find_task(run_row["id"], task)
        attempts = store.attempts(run_row["id"], row["id"])
    if attempt is not None:
        numbers = [a["number"] for a in attempts]
        attempts = [a for a in attempts if a["number"] == attempt]
        if not attempts:
            raise fail(f"task {row['name']} has no attempt {attempt} in run {run_row['id']}; "
                       f"its attempts are {', '.join(map(str, numbers)) or 'none'}", EXIT_USAGE)
    if as_json:
        print_json({"run": run_row["id"], "task": row["name"], "state": row["state"],
                    "cached": bool(row["cached"]), "attempts": [_log_json(a) for a in attempts]})
        return
    if not attempts:
        state = "reused from the cache" if row["cached"] else row["state"]
        console.print(f"task {row['name']} has no attempts in run {run_row['id']} ({state})",
                      markup=False)
        return
    for a in attempts:
        _print_attempt(row["name"], a, full)


LOG_NAMES = ("stdout.log", "stderr.log")


def _log_json(a: Mapping[str, Any]) -> dict[str, Any]:
    """An attempt for ``logs --json``: the end of each log as :func:`views.read_log` gives it
    (a log may be gigabytes: never all of it) and the log files' paths."""
    data = {k: a[k] for k in ("number", "state", "host", "native_id", "error")}
    for name in LOG_NAMES:
        stem = name.removesuffix(".log")
        path = Path(a["workdir"], name) if a["workdir"] else None
        data[stem] = views.read_log(a["workdir"], name)
        data[f"{stem}_path"] = str(path) if path is not None and path.is_file() else None
    return data


def _print_attempt(name: str, a: Mapping[str, Any], full: bool) -> None:
    title = f"{name} attempt {a['number']}: {a['state']} on {a['host'] or '?'} {a['native_id'] or ''}"
    if interactive(console):
        console.rule(escape(title.rstrip()))
    else:
        console.out(f"== {title.rstrip()} ==", highlight=False)
    for log in LOG_NAMES:
        if full:
            _print_full_log(a["workdir"], log)
            continue
        text = views.read_log(a["workdir"], log)
        if text:
            console.print(f"[bold]{log}[/]")
            console.out(text.rstrip("\n"), highlight=False)
    if a["error"]:
        console.print("[bold red]error[/]")
        console.out(a["error"].rstrip("\n"), highlight=False)


def _print_full_log(workdir: str | None, name: str) -> None:
    """A whole log, copied block by block (it may be larger than memory)."""
    path = Path(workdir or "", name)
    if not workdir or not path.is_file() or path.stat().st_size == 0:
        return
    console.print(f"[bold]{name}[/]")
    console.file.flush()
    out = getattr(console.file, "buffer", None)
    if out is None:  # a text stream (tests): decode
        text = views.read_log(workdir, name, full=True) or ""
        console.out(text.rstrip("\n"), highlight=False)
        return
    views.copy_log(workdir, name, out)
    out.flush()
