"""``corral``: run pipelines and inspect runs.

Exit codes: 0 success; 1 the run failed or was cancelled; 2 bad input (usage, graph, parameters,
configuration, an unknown run or task); 3 the run is locked by a live engine; 4 the state store
cannot be used; 130 interrupted. Errors are one ``error: ...`` line on standard error.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from corral.api import RunConfig, execute, load_pipeline, request_control
from corral.config import load_config
from corral.engine.states import TERMINAL_RUN_STATES, RunState
from corral.errors import CorralError, RunLockedError, RunNotFound, StoreError, UsageError
from corral.params import parse_cli_params
from corral.store import Store
from corral.store.store import GC_MIN_AGE, HEARTBEAT_STALE

from . import views

app = typer.Typer(
    name="corral", no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
    help="Corral: Python workflows that run locally, on clusters, over SSH or on Dask.",
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
"""Errors and notes are single lines that scripts can grep: never wrapped at the terminal width."""

EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_STORE = 1, 2, 3, 4


def _print_version(value: bool) -> None:
    if value:
        from corral import __version__

        console.print(f"corral {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    """Corral: Python workflows that run locally, on clusters, over SSH or on Dask."""

WorkdirOpt = Annotated[Path, typer.Option("--workdir", "-C", help="Working directory (.corral/ lives here).")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the state store.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def fail(message: str, code: int) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


def note(message: str) -> None:
    """A progress note of the library (resuming, lock takeover ...), on standard error."""
    err_console.print(f"[dim]{escape(message)}[/]", highlight=False)


def exit_code_for(exc: CorralError) -> int:
    if isinstance(exc, RunLockedError):
        return EXIT_LOCKED
    if isinstance(exc, RunNotFound):
        return EXIT_USAGE  # a wrong run id or task name is bad input, not a broken store
    if isinstance(exc, StoreError):
        return EXIT_STORE
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_FAILED


def open_store(workdir: Path, db: str | None) -> Store:
    """The store of an existing working directory (inspection commands never create one)."""
    if not workdir.is_dir():
        raise UsageError(f"working directory {str(workdir)!r} does not exist; check -C/--workdir")
    return Store.open(workdir.resolve(), db)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})  # --help: see _run_help
def run(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Pipeline file.", show_default=False)] = None,
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline name (if the file has several).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Tasks running at once.")] = None,
    executor: Annotated[str | None, typer.Option("--executor", "-e", help="Executor kind or corral.toml profile.")] = None,  # noqa: E501
    force: Annotated[list[str] | None, typer.Option("--force", help="Rerun this task (name or glob) and everything downstream.")] = None,  # noqa: E501
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rerun every task.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Cancel everything at the first failure.")] = False,
    new: Annotated[bool, typer.Option("--new", help="Start a new run instead of resuming an unfinished one.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="corral.toml to use.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Submit the graph with scheduler-side dependencies and exit.")] = False,  # noqa: E501
    workdir: WorkdirOpt = Path("."),
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline: [bold]corral run FILE [PIPELINE] [--param value ...][/]. With FILE,
    [bold]--help[/] also lists the pipeline's parameters."""
    extra = list(ctx.args)
    if pipeline is not None and pipeline.startswith("-"):
        extra, pipeline = [pipeline, *extra], None
    if file is not None and str(file) == "--help":  # `corral run --help [FILE [PIPELINE]]`
        extra, file = ["--help", *extra], Path(pipeline) if pipeline else None
        pipeline = next((a for a in extra[1:2] if not a.startswith("-")), None)
    if "--help" in extra or file is None:
        if "--help" not in extra:
            raise fail("missing FILE: corral run FILE [PIPELINE] [--param value ...]; "
                       "see corral run --help", EXIT_USAGE)
        _run_help(ctx, file, pipeline)
        return
    try:
        pipe = load_pipeline(file, pipeline)
        params = parse_cli_params(pipe, extra)
        cfg_file = load_config(workdir, config)
        kind, options = cfg_file.executor(executor)
        cfg = RunConfig(
            executor=kind, executor_options=options, jobs=jobs if jobs is not None else cfg_file.defaults.get("jobs"),
            workdir=workdir, db=db, force=force or [], no_cache=no_cache, fail_fast=fail_fast,
            new=new, source=str(file.resolve()),
            on_note=note,
        )
        if detach:
            from corral.engine.detach import submit_detached

            run_id = submit_detached(pipe, params, cfg)
            console.print(f"submitted run {run_id}; follow it with: corral status {run_id}")
            return
        result = _run_with_display(pipe, params, cfg, quiet or as_json)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    _print_outcome(result, as_json)


def _run_help(ctx: typer.Context, file: Path | None, name: str | None) -> None:
    """The command's help, then (given FILE) the pipeline's parameters from its signature."""
    console.print(ctx.get_help())
    if file is None:
        return
    try:
        pipe = load_pipeline(file, name)
    except CorralError as exc:
        err_console.print(f"[yellow]cannot list the pipeline's parameters: {escape(str(exc))}[/]")
        return
    console.print(views.params_table(pipe))


def _run_with_display(pipe: Any, params: dict[str, Any], cfg: RunConfig, quiet: bool) -> Any:
    """Run in the foreground. Ctrl-C or SIGTERM stops the engine (the run is left
    *interrupted*) and exits 130 with a one-line hint (typer would exit 130 silently)."""
    from .progress import LiveProgress

    started: list[str] = []
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if quiet or not console.is_terminal:
            return execute(pipe, params, cfg, engine_ready=lambda e: started.append(e.run_id))
        with LiveProgress(console, pipe.name) as live:
            cfg.on_progress = live.update
            result = execute(pipe, params, cfg, engine_ready=lambda e: started.append(e.run_id))
            if result._engine is not None:
                live.update(result._engine.progress, force=True)
        return result
    except KeyboardInterrupt:
        which = f"run {started[0]} " if started else ""
        err_console.print(f"[yellow]{which}interrupted; run the same command again to resume[/]")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _print_outcome(result: Any, as_json: bool) -> None:
    if as_json:
        value = None
        if result.ok:
            try:
                value = result.value
            except CorralError:
                value = None
        views.print_json(console, {"run": result.run_id, "state": result.state.value,
                                   "errors": result.errors, "result": value})
    elif result.ok:
        console.print(f"[green]run {result.run_id} succeeded[/]")
        value = result.value
        if value is not None:
            console.print("result:", escape(_summarise(value)), highlight=False)
    else:
        err_console.print(f"[red]run {result.run_id} {result.state.value}[/]")
        for line in result.errors[:10]:
            err_console.print(f"  [red]✗[/] {escape(line)}", highlight=False)
        err_console.print(f"see [bold]corral status {result.run_id}[/] and "
                          f"[bold]corral logs {result.run_id} TASK[/]")
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


def _summarise(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 400 else text[:400] + "..."


@app.command()
def runs(workdir: WorkdirOpt = Path("."), db: DbOpt = None, as_json: JsonOpt = False,
         limit: Annotated[int, typer.Option(help="How many runs.")] = 20,
         compare: Annotated[tuple[str, str] | None, typer.Option("--compare", help="Compare two runs: A B.")] = None) -> None:  # noqa: E501
    """List runs, newest first (or compare two with --compare A B)."""
    try:
        store = open_store(workdir, db)
        if compare:
            _compare(store, compare, as_json)
            return
        rows = store.list_runs(limit)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    if as_json:
        views.print_json(console, rows)
    else:
        views.runs_table(console, rows)


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
           interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between refreshes (--watch).")] = 2.0) -> None:  # noqa: E501
    """Show a run and its tasks (state, duration, peak memory, cached or not)."""
    try:
        store = open_store(workdir, db)
        if watch:
            if metrics:
                raise UsageError("--watch and --metrics do not go together; watch the run, then "
                                 "run `corral status RUN --metrics`")
            from .watch import watch_run

            code = watch_run(store, store.get_run(run_id)["id"], limit, as_json, interval)
        else:
            run_row, rows = snapshot(store, run_id)
            if metrics:
                _metrics(store, run_row["id"], as_json)
                return
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    if watch:
        raise typer.Exit(code)
    if as_json:
        views.print_json(console, {"run": run_row, "tasks": rows})
    else:
        views.status_view(console, run_row, rows, limit)


def snapshot(store: Store, run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run (reconciled first) and its task rows."""
    run_row = store.get_run(run_id)
    _reconcile(store, run_row)
    run_row = store.get_run(run_row["id"])
    return run_row, views.task_rows(store.tasks(run_row["id"]), store.attempts(run_row["id"]))


def _reconcile(store: Store, run_row: dict[str, Any]) -> None:
    """A run whose engine died while 'running' is shown as interrupted; detached and exported
    runs take their results from the exit markers. A 'pending' run has no engine until the one
    that created it claims it, a moment later: only a stale one is interrupted."""
    if run_row["state"] in ("detached", "exported"):
        from corral.engine.detach import reconcile

        reconcile(store, run_row["id"])
        return
    if store.engine_alive(run_row):
        return
    stale = time.time() - (run_row["created_at"] or 0) > HEARTBEAT_STALE
    if run_row["state"] == "running" or (run_row["state"] == "pending" and stale):
        store.update_run(run_row["id"], state=RunState.INTERRUPTED.value)


def _metrics(store: Store, run_id: str, as_json: bool) -> None:
    from corral.report import metrics as rm
    from corral.report import terminal

    m = rm.run_metrics(store, run_id)
    if as_json:
        views.print_json(console, m.to_json(details=True))
    else:
        console.print(terminal.metrics_renderable(m))


@app.command()
def logs(run_id: Annotated[str, typer.Argument(help="Run id.")],
         task: Annotated[str, typer.Argument(help="Task name (or unique prefix).")],
         attempt: Annotated[int | None, typer.Option(help="Attempt number (default: all).")] = None,
         full: Annotated[bool, typer.Option("--full", help="Whole logs (default: their end).")]
         = False,
         workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Show a task's output, error output and traceback, attempt by attempt (the last lines
    of each log; --full for all of them)."""
    try:
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        row = store.find_task(run_row["id"], task)
        attempts = store.attempts(run_row["id"], row["id"])
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    if not attempts:
        state = "reused from the cache" if row["cached"] else row["state"]
        console.print(f"task {row['name']} has no attempts in run {run_row['id']} ({state})",
                      markup=False)
        return
    if attempt is not None:
        numbers = [a["number"] for a in attempts]
        attempts = [a for a in attempts if a["number"] == attempt]
        if not attempts:
            raise fail(f"task {row['name']} has no attempt {attempt} in run {run_row['id']}; "
                       f"its attempts are {', '.join(map(str, numbers))}", EXIT_USAGE)
    for a in attempts:
        console.rule(f"{escape(row['name'])} attempt {a['number']}: {a['state']} "
                     f"on {a['host'] or '?'} {a['native_id'] or ''}")
        for name in ("stdout.log", "stderr.log"):
            if full:
                _print_full_log(a["workdir"], name)
                continue
            text = views.read_log(a["workdir"], name)
            if text:
                console.print(f"[bold]{name}[/]")
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


def _control(run_id: str, workdir: Path, db: str | None, control: str, verb: str) -> None:
    try:
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        request_control(store, run_row["id"], control)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    console.print(f"{verb} run {run_row['id']}")


@app.command()
def pause(run_id: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Stop releasing new tasks (running ones finish)."""
    _control(run_id, workdir, db, "pause", "pausing")


@app.command()
def resume(run_id: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None,
           jobs: Annotated[int | None, typer.Option("--jobs", "-j")] = None) -> None:
    """Continue a paused run; a run whose engine is gone (failed, interrupted) is run again
    from where it stopped, in the foreground."""
    try:
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        if store.engine_alive(run_row):
            request_control(store, run_row["id"], "none")
            console.print(f"resuming run {run_row['id']}")
            return
        if run_row["state"] == "succeeded":
            console.print(f"run {run_row['id']} already succeeded")
            return
        source, name = run_row["source"], run_row["pipeline"]
        pipe = load_pipeline(source, name)
        ex = run_row["executor"] or {}
        cfg = RunConfig(executor=ex.get("kind", "local"), executor_options=ex.get("options", {}),
                        jobs=jobs or ex.get("jobs"), workdir=Path(run_row["workdir"]), db=db,
                        source=source, on_note=note)
        store.update_run(run_row["id"], control="none")
        result = _run_with_display(pipe, run_row["params"], cfg, False)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    _print_outcome(result, False)


@app.command()
def cancel(run_id: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None) -> None:
    """Cancel a run: its engine cancels running tasks (on clusters too). A run without a live
    engine has its recorded cluster jobs cancelled directly."""
    try:
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        if store.engine_alive(run_row):
            request_control(store, run_row["id"], "cancel")
            console.print(f"cancelling run {run_row['id']}")
            return
        if RunState(run_row["state"]) in TERMINAL_RUN_STATES:
            raise UsageError(f"run {run_row['id']} already ended ({run_row['state']}); "
                             "nothing to cancel")
        n = _cancel_orphans(store, run_row)
        store.mark_cancelled(run_row["id"])
        store.update_run(run_row["id"], state=RunState.CANCELLED.value, control="none")
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    console.print(f"cancelled run {run_row['id']}" + (f" ({n} cluster jobs)" if n else ""))


def _cancel_orphans(store: Store, run_row: dict[str, Any]) -> int:
    from corral.executors import create_executor
    from corral.executors.base import AttemptRef, ExecutorContext

    rows = [r for r in store.inflight_attempts(run_row["id"]) if r["native_id"]]
    if not rows:
        return 0
    ex = run_row["executor"] or {}
    wd = Path(run_row["workdir"])
    ctx = ExecutorContext(run_row["id"], wd / ".corral" / "work" / run_row["id"], wd,
                          int(ex.get("jobs") or 1), sys.executable)
    executor = create_executor(ex.get("kind", "local"), ex.get("options", {}), ctx)
    executor.cancel_native([AttemptRef(r["id"], r["native_id"], Path(r["workdir"] or "."),
                                       r["submitted_at"]) for r in rows])
    return len(rows)


@app.command()
def clean(workdir: WorkdirOpt = Path("."), db: DbOpt = None,
          keep_runs: Annotated[int | None, typer.Option(help="Keep results used by the newest N runs; drop older runs.")] = None,  # noqa: E501
          dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would go.")] = False,
          min_age: Annotated[float, typer.Option("--min-age", help="Spare blobs written or reused less than this many seconds ago (runs in progress write blobs just before recording them).")] = GC_MIN_AGE) -> None:  # noqa: E501
    """Garbage-collect the cache: unreferenced blobs, and results of old runs with --keep-runs."""
    try:
        stats = open_store(workdir, db).collect_garbage(keep_runs, dry_run, min_age)
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {stats['results']} results and {stats['blobs']} blobs "
                  f"({stats['bytes'] / 2**20:.1f} MiB)")


from . import provenance as _provenance  # noqa: E402,F401  (registers report commands)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted; run the same command again to resume[/]")
        sys.exit(130)
    finally:
        # The process ends now: spare the interpreter's final collections over every object
        # left (0.1-0.3 s after a Littlewood run on the reference VM; exit handlers still run).
        gc.freeze()


if __name__ == "__main__":
    main()
