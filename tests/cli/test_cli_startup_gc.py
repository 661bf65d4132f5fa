"""The collector is off while the command line starts (``corral.cli.startup``) and on again,
with the start-up's objects frozen, once the command runs: a run's engine runs collected."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from corral.cli import startup

from .clihelp import Project

PROBE = """
import gc, runpy, sys
import corral.engine.engine as engine
seen = []
original = engine.Engine.run
def run(self, *args, **kwargs):
    seen.append(gc.isenabled())
    return original(self, *args, **kwargs)
engine.Engine.run = run
sys.argv = ['corral', *sys.argv[1:]]
code = None
try:
    runpy.run_module('corral', run_name='__main__')
except SystemExit as e:
    code = e.code
print('RESULT', seen, gc.isenabled(), gc.get_freeze_count() > 0, code)
"""


def _probe(project: Project, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args, "-C", str(project.wd)],  # noqa: S603
                         capture_output=True, text=True, check=True, cwd=project.wd).stdout
    words = out.split("RESULT", 1)[1].split()
    return [*words[:-1], "0" if words[-1] == "None" else words[-1]]  # the exit status


def test_engine_runs_with_the_collector_on(project: Project) -> None:
    """The engine starts with the collector on, and it stays on; the start-up's objects were
    frozen. Every other command turns it on when it is invoked."""
    assert _probe(project, "run", project.file("sums.py"), "--n", "2", "-q") == \
        ["[True]", "True", "True", "0"]
    assert _probe(project, "runs")[1:] == ["True", "True", "0"]


@pytest.fixture
def collector_restored() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    gc.unfreeze()
    (gc.enable if was_enabled else gc.disable)()


@pytest.mark.usefixtures("collector_restored")
def test_only_its_own_pause_is_ended() -> None:
    gc.enable()
    startup.pause()
    assert not gc.isenabled()
    startup.over()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    gc.unfreeze()
    gc.disable()  # turned off by the program itself: left off, nothing frozen
    startup.pause()
    startup.over()
    assert not gc.isenabled() and gc.get_freeze_count() == 0
