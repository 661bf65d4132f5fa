"""What every command of the ``corral`` command line shares: the typer app, the consoles,
option types, exit codes, one-line errors and opening a working directory's store.

Exit codes: 0 success; 1 the run failed or was cancelled; 2 bad input (usage, graph, parameters,
configuration, an unknown run or task); 3 the run is locked by a live engine; 4 the state store
cannot be used; 130 interrupted. Errors are one ``error: ...`` line on standard error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from corral.errors import CorralError, RunLockedError, RunNotFound, StoreError, UsageError

from . import startup
from .plainparams import PlainParamsGroup

if TYPE_CHECKING:
    from corral.store import Store
    from corral.store.reader import SqliteReader

app = typer.Typer(
    name="corral", cls=PlainParamsGroup, no_args_is_help=True, add_completion=False,
    rich_markup_mode="rich",
    help="Corral: Python workflows that run locally, on clusters, over SSH or on Dask.",
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
"""Errors and notes are single lines that scripts can grep: never wrapped at the terminal width."""

EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_STORE = 1, 2, 3, 4

WorkdirOpt = Annotated[Path, typer.Option("--workdir", "-C", help="Working directory (.corral/ lives here).")]
DbOpt = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the state store.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
WideOpt = Annotated[bool, typer.Option("--wide", help="Every column, whatever the terminal's width.")]
TsvOpt = Annotated[bool, typer.Option("--tsv", help="Tab-separated values, a header line first.")]


def _print_version(value: bool) -> None:
    if value:
        from corral import __version__

        console.print(f"corral {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.",
    )] = False,
) -> None:
    """Corral: Python workflows that run locally, on clusters, over SSH or on Dask."""
    if ctx.invoked_subcommand not in STARTS_LATER:
        startup.over()


STARTS_LATER = frozenset({"run", "resume"})
"""The commands whose start-up lasts until their engine is ready (:mod:`.startup`)."""


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


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """A :class:`CorralError` raised in the block becomes its one ``error:`` line and exit
    status (the one translation of every command)."""
    try:
        yield
    except CorralError as exc:
        raise fail(str(exc), exit_code_for(exc)) from None


def open_store(workdir: Path, db: str | None) -> Store:
    """The store of an existing working directory (inspection commands never create one)."""
    from corral.store import Store

    if not workdir.is_dir():
        raise UsageError(f"working directory {str(workdir)!r} does not exist; check -C/--workdir")
    return Store.open(workdir.resolve(), db)


def open_reader(workdir: Path, db: str | None) -> SqliteReader | None:
    """A reader of the working directory's SQLite store that needs no SQLAlchemy (the fast path
    of ``runs`` and ``status``), or None: then open the full store with :func:`open_store`."""
    from corral.store.reader import open_reader as open_sqlite_reader

    return open_sqlite_reader(workdir, db) if workdir.is_dir() else None


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def say(as_json: bool, data: dict[str, Any], text: str) -> None:
    """A command's one result: ``data`` as JSON with ``--json``, else ``text``."""
    if as_json:
        print_json(data)
    else:
        console.print(text, markup=False, highlight=False)
