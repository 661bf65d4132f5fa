"""``corral``: run pipelines and inspect runs. The commands live in modules of this package
by concern (:mod:`.run`, :mod:`.status`, :mod:`.control`, :mod:`.provenance`) over
:mod:`.common`; this module registers them and is the program's entry point.

Importing it is cheap: the typer app and its commands are built on first use (``main()`` or
``from corral.cli.app import app``), and ``corral --version`` answers without them. Each
command imports what it needs (the store and SQLAlchemy, the engine, the executors) when it
runs, so that ``corral --help`` pays for none of them (issue 12).

Exit codes: see :mod:`corral.cli.common`.
"""

from __future__ import annotations

import gc
import inspect
import logging
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

_built: list[typer.Typer] = []

COMMAND_MODULES = ("run", "status", "control", "provenance", "gateway", "ui")
"""The modules of this package that register commands, in the order of ``corral --help``."""


def _build() -> typer.Typer:
    """The typer app with every command registered (once)."""
    if not _built:
        import importlib

        from .common import app

        for name in COMMAND_MODULES:  # each registers its commands on import
            importlib.import_module(f"{__package__}.{name}")

        _reflow_help(app)
        _built.append(app)
    return _built[0]


def _reflow_help(app: typer.Typer) -> None:
    """Help texts read as written: typer's rich help keeps a docstring's single line breaks
    (in the list of commands), so each paragraph is joined into one line here."""
    from typer.models import DefaultPlaceholder

    def given(value: Any) -> Any:
        return None if isinstance(value, DefaultPlaceholder) else value

    infos: list[Any] = [*app.registered_commands, *app.registered_groups]
    for info in infos:
        sub = getattr(info, "typer_instance", None)
        doc = (given(info.help) or (given(sub.info.help) if sub else None)
               or (info.callback.__doc__ if given(info.callback) else None))
        if doc:
            paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
            info.help = "\n\n".join(paragraphs)
            # whole in the list of commands, wrapped rather than cut with "..." in plain help
            info.short_help = given(info.short_help) or paragraphs[0]


def __getattr__(name: str) -> Any:
    if name == "app":
        return _build()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plain_when_piped() -> None:
    """Help and usage errors as plain text (no boxes, no colour) when standard output is not a
    terminal, or with NO_COLOR or TERM=dumb: typer reads TYPER_USE_RICH when it is imported."""
    import os

    if not sys.stdout.isatty() or os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        os.environ.setdefault("TYPER_USE_RICH", "0")


def main() -> None:
    if sys.argv[1:] == ["--version"]:  # at once: no typer, rich or store to import
        from corral import __version__

        sys.stdout.write(f"corral {__version__}\n")
        return
    _plain_when_piped()
    app = _build()
    from .common import err_console

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


__all__ = ["app", "main"]  # noqa: F822  (app: built on first use, see __getattr__)

if __name__ == "__main__":
    main()
