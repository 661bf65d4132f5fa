"""``corral``: run pipelines and inspect runs. The commands live in modules of this package
by concern (:mod:`.run`, :mod:`.status`, :mod:`.control`, :mod:`.provenance`) over
:mod:`.common`; this module registers them and is the program's entry point.

Importing it is cheap: the typer app and its commands are built on first use (``main()`` or
``from corral.cli.app import app``), and ``corral --version`` answers without them;
``corral CMD ...`` registers the commands of CMD's module only. Each
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

from . import startup

if TYPE_CHECKING:
    import typer

_registered: list[str] = []
"""The modules of :data:`COMMAND_MODULES` imported so far (their commands registered)."""

COMMAND_MODULES = ("run", "status", "control", "provenance", "gateway", "ui")
"""The modules of this package that register commands, in the order of ``corral --help``."""

COMMANDS = {"run": "run", "resume": "run", "runs": "status", "status": "status",
            "logs": "status", "pause": "control", "cancel": "control", "clean": "control",
            "report": "provenance", "lineage": "provenance", "why": "provenance",
            "export": "provenance", "gateway": "gateway", "ui": "ui"}
"""The module that registers each command: ``corral CMD ...`` imports that one only, and typer
builds only its commands (a test checks this against the commands registered)."""


def _build(only: str | None = None) -> typer.Typer:
    """The typer app with the commands of module ``only`` registered, or all of them."""
    import importlib

    from .common import app

    wanted = (only,) if only is not None else COMMAND_MODULES
    new = [name for name in wanted if name not in _registered]
    for name in new:  # each registers its commands on import
        importlib.import_module(f"{__package__}.{name}")
        _registered.append(name)
    if new:
        app.registered_commands.sort(key=_module_rank)  # as in COMMAND_MODULES, however they came
        _reflow_help(app)
    return app


def _module_rank(info: Any) -> int:
    module = getattr(info.callback, "__module__", "").rpartition(".")[2]
    return COMMAND_MODULES.index(module) if module in COMMAND_MODULES else len(COMMAND_MODULES)


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
    startup.pause()  # until the command runs (corral run: until its engine is ready)
    app = _build(COMMANDS.get(sys.argv[1]) if len(sys.argv) > 1 else None)
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
