"""``corral run`` and ``corral resume``: a pipeline run in the foreground, with live progress;
Ctrl-C leaves it *interrupted* and the same command resumes it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from corral.errors import CorralError

from . import startup, views
from .common import (
    EXIT_FAILED,
    EXIT_USAGE,
    DbOpt,
    JsonOpt,
    WorkdirOpt,
    app,
    console,
    err_console,
    fail,
    handled,
    note,
    open_store,
    say,
)
from .plainparams import PlainParamsCommand

if TYPE_CHECKING:
    from corral.engine.lifecycle import RunResult
    from corral.engine.prepare import RunConfig

    from .report_to import Reporter


@app.command(cls=PlainParamsCommand,  # no pydantic to import: see .plainparams
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})  # --help: see _run_help
def run(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Pipeline file.", show_default=False)] = None,
    pipeline: Annotated[str | None, typer.Argument(help="Pipeline name (if the file has several).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", help="Tasks running at once.")] = None,
    executor: Annotated[str | None, typer.Option("--executor", "-e", help="Executor kind or corral.toml profile.")] = None,  # noqa: E501
    force: Annotated[list[str] | None, typer.Option("--force", help="Rerun this task (name or glob) and everything downstream.")] = None,  # noqa: E501
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Rerun every task.")] = False,
    rehash: Annotated[bool, typer.Option("--rehash", help="Read every input file again (do not trust unchanged size, times and inode).")] = False,  # noqa: E501
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Cancel everything at the first failure.")] = False,
    new: Annotated[bool, typer.Option("--new", help="Start a new run instead of resuming an unfinished one.")] = False,
    config: Annotated[Path | None, typer.Option("--config", help="corral.toml to use.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Submit the graph with scheduler-side dependencies and exit.")] = False,  # noqa: E501
    workdir: WorkdirOpt = Path("."),
    db: DbOpt = None,
    as_json: JsonOpt = False,
    report_to: Annotated[str | None, typer.Option("--report-to", help="Report the run's progress and per-task metrics to this Corral gateway (http:// or https:// URL); a gateway that is down never stops the run.")] = None,  # noqa: E501
    token: Annotated[str | None, typer.Option("--token", envvar="CORRAL_REPORT_TOKEN", help="The gateway token (jobs:write) for --report-to; better in CORRAL_REPORT_TOKEN, so it does not show in ps.")] = None,  # noqa: E501
    report_project: Annotated[str | None, typer.Option("--report-project", help="Gateway project whose members see the reported run.")] = None,  # noqa: E501
) -> None:
    """Run a pipeline: corral run FILE [PIPELINE] [--param value ...]. With FILE, --help also
    lists the pipeline's parameters. A parameter named like one of run's options goes after `--`.

    Example: corral run pipeline.py --n 100 -j 8"""
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
    from corral.config import load_config
    from corral.engine.prepare import RunConfig
    from corral.loading import load_pipeline
    from corral.params import parse_cli_params

    reporter = None
    if report_to is not None:
        from .report_to import Reporter, check_target

        with handled():
            reporter = Reporter(check_target(report_to, token), token or "", report_project)
    if rehash:
        from corral.hashing import set_rehash

        set_rehash(True)
    with handled():
        pipe = load_pipeline(file, pipeline)
        params = parse_cli_params(pipe, extra)
        _refuse_shadowed(ctx, pipe, params, file)
        cfg_file = load_config(workdir, config)
        kind, options = cfg_file.executor(executor)
        cfg = RunConfig(
            executor=kind, executor_options=options, jobs=jobs if jobs is not None else cfg_file.defaults.get("jobs"),
            workdir=workdir, db=db, force=force or [], no_cache=no_cache, fail_fast=fail_fast,
            new=new, source=str(file.resolve()),
            on_note=note,
        )
        if detach:
            from corral.engine.detached import submit_detached

            run_id = submit_detached(pipe, params, cfg)
            console.print(f"submitted run {run_id}; follow it with: corral status {run_id}")
            return
        result = _run_with_display(pipe, params, cfg, quiet or as_json, reporter)
    _print_outcome(result, as_json)


def _refuse_shadowed(ctx: typer.Context, pipe: Any, params: dict[str, Any], file: Path) -> None:
    """A parameter of the pipeline named like an option of ``corral run`` given on the command
    line (``--token``, ``--jobs``...) must come after ``--``: else its value went to the
    option, and the pipeline would run with the parameter's default."""
    from corral.errors import ParameterError
    from corral.params import shadowed_param

    def typed(name: str | None) -> bool:  # (typer's own copy of click: compared by name)
        source = ctx.get_parameter_source(name) if name else None
        return source is not None and source.name == "COMMANDLINE"

    flags = [o for p in ctx.command.params if typed(p.name)
             for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    flag = shadowed_param(pipe, flags, set(params))
    if flag is not None:
        raise ParameterError(
            f"{flag} is an option of corral run and a parameter of pipeline {pipe.name}: put the "
            f"parameter after `--` (corral run {file} [options] -- {flag} VALUE)"
        )


def _run_help(ctx: typer.Context, file: Path | None, name: str | None) -> None:
    """The command's help, then (given FILE) the pipeline's parameters from its signature."""
    from corral.loading import load_pipeline

    console.print(ctx.get_help())
    if file is None:
        return
    try:
        pipe = load_pipeline(file, name)
    except CorralError as exc:
        err_console.print(f"[yellow]cannot list the pipeline's parameters: {escape(str(exc))}[/]")
        return
    console.print(views.params_table(pipe))


def _run_with_display(pipe: Any, params: dict[str, Any], cfg: RunConfig, quiet: bool,
                      reporter: Reporter | None = None) -> RunResult:
    """Run in the foreground. Ctrl-C or SIGTERM stops the engine (the run is left
    *interrupted*) and exits 130 with a one-line hint (typer would exit 130 silently)."""
    from corral.engine.lifecycle import execute
    from corral.states import RunState

    from .layout import interactive
    from .progress import LineProgress, LiveProgress

    started: list[str] = []
    engines: list[Any] = []

    def ready(engine: Any) -> None:
        startup.over()  # the collector back on, the start-up's objects out of its sight
        started.append(engine.run_id)
        engines.append(engine)
        if reporter is not None:
            reporter.start(engine.run_id, pipe.name, cfg.executor)

    def stop(signum: int, _frame: Any) -> None:
        if not engines:
            raise KeyboardInterrupt(f"signal {signum}")
        engines[0].interrupt()  # at the loop's next turn, or at once outside the loop

    previous = signal.signal(signal.SIGTERM, stop)
    previous_int = signal.signal(signal.SIGINT, stop)
    try:
        if quiet:
            cfg.on_progress = reporter.progress if reporter is not None else None
            result = execute(pipe, params, cfg, engine_ready=ready)
        else:
            shown = LiveProgress if interactive(console) else LineProgress
            with shown(console, pipe.name) as live:
                cfg.on_progress = live.update if reporter is None else reporter.chain(live.update)
                result = execute(pipe, params, cfg, engine_ready=ready)
                if result.engine is not None:
                    live.update(result.engine.progress, force=True)
        if reporter is not None:
            reporter.finish(result.state, result.store)
        return result
    except KeyboardInterrupt:
        if reporter is not None:
            reporter.finish(RunState.INTERRUPTED)
        which = f"run {started[0]} " if started else ""
        err_console.print(f"[yellow]{which}interrupted; run the same command again to resume[/]")
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        startup.over()  # if the engine never became ready


def _print_outcome(result: RunResult, as_json: bool) -> None:
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


@app.command(cls=PlainParamsCommand)
def resume(run_id: str, workdir: WorkdirOpt = Path("."), db: DbOpt = None,
           jobs: Annotated[int | None, typer.Option("--jobs", "-j")] = None,
           as_json: JsonOpt = False) -> None:
    """Continue a paused run; a run whose engine is gone (failed, interrupted) is run again
    from where it stopped, in the foreground.

    Example: corral resume latest"""
    from corral.engine.lifecycle import request_control
    from corral.engine.prepare import recorded_run

    with handled():
        store = open_store(workdir, db)
        run_row = store.get_run(run_id)
        if store.engine_alive(run_row):
            request_control(store, run_row["id"], "none")
            say(as_json, {"run": run_row["id"], "control": "none"}, f"resuming run {run_row['id']}")
            return
        if run_row["state"] == "succeeded":
            say(as_json, {"run": run_row["id"], "state": "succeeded", "errors": []},
                f"run {run_row['id']} already succeeded")
            return
        pipe, params, cfg = recorded_run(run_row, db=db, jobs=jobs, on_note=note)
        store.update_run(run_row["id"], control="none")
        result = _run_with_display(pipe, params, cfg, as_json)
    _print_outcome(result, as_json)
