"""``corral CMD`` registers only the commands of CMD's module (``corral.cli.app.COMMANDS``)."""

from __future__ import annotations

import subprocess
import sys

from typer.models import DefaultPlaceholder

from corral.cli.app import COMMAND_MODULES, COMMANDS, app


def test_commands_name_the_module_that_registers_them() -> None:
    registered = {}
    for info in app.registered_commands:
        assert info.callback is not None
        registered[info.name or info.callback.__name__] = info.callback.__module__
    for group in app.registered_groups:
        sub = group.typer_instance
        assert sub is not None
        name = group.name if not isinstance(group.name, DefaultPlaceholder) else sub.info.name
        registered[str(name)] = sub.registered_commands[0].callback.__module__  # type: ignore[union-attr]
    assert {name: f"corral.cli.{module}" for name, module in COMMANDS.items()} == registered
    assert set(COMMANDS.values()) == set(COMMAND_MODULES)
    order = [COMMAND_MODULES.index(registered[i.name or i.callback.__name__].rpartition(".")[2])
             for i in app.registered_commands if i.callback is not None]
    assert order == sorted(order)  # corral --help lists the commands in the modules' order


def test_commands_keep_their_order_however_they_came() -> None:
    """A process that ran ``corral status`` (its module registered first) and then builds the
    whole app lists the commands as ``corral --help`` always does."""
    probe = ("import sys\nfrom corral.cli import app as a\na._build('status')\n"
             "print(' '.join(i.name or i.callback.__name__ for i in a.app.registered_commands))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,  # noqa: S603
                         check=True).stdout.split()
    assert out[:5] == ["run", "resume", "runs", "status", "logs"], out
