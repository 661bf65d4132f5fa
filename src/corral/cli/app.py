"""``corral``: run pipelines and inspect runs. The commands live in modules of this package
by concern (:mod:`.run`, :mod:`.status`, :mod:`.control`, :mod:`.provenance`) over
:mod:`.common`; this module registers them and is the program's entry point.

Exit codes: see :mod:`corral.cli.common`.
"""

from __future__ import annotations

import gc
import inspect
import logging
import sys
from typing import Annotated

import typer

from . import control, provenance, run, status  # noqa: F401  (each registers its commands)
from .common import app, console, err_console


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


def _reflow_help() -> None:
    """Help texts read as written: typer's rich help keeps a docstring's single line breaks
    (in the list of commands), so each paragraph is joined into one line here."""
    for info in app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


_reflow_help()


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


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
