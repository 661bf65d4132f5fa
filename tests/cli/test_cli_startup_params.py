"""The command line's own conversion of plain parameters (``corral.cli.plainparams``): the
values typer would give, typer's errors for anything else, and no pydantic imported by a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer import BadParameter
from typer.core import TyperArgument, TyperOption

from corral.cli.app import app
from corral.cli.plainparams import PlainCoercion, plain_leaf

from .clihelp import Project, corral, invoke

SAMPLES: dict[Any, list[Any]] = {
    str: ["abc", "", "--x", "ünï", " a b "],
    int: ["3", "-2", "0", "007", "+3", "3.0", "x", " 4", "", "99999999999999999999"],
    bool: [True, False],
    Path: [".", "a/b", "", "/no/such/dir", Path("."), "-"],
}


def _converted(coerce: Any, value: Any, param: Any, ctx: Any) -> Any:
    try:
        return ("value", coerce(value, param=param, ctx=ctx))
    except BadParameter as exc:
        return ("error", exc.message)


def _plain_params() -> list[tuple[str, TyperArgument | TyperOption]]:
    group = typer.main.get_command(app)
    commands: dict[str, Any] = getattr(group, "commands", {})
    found = []
    for name, command in [("corral", group), *commands.items()]:
        ctx = command.make_context(name, [], resilient_parsing=True)
        found += [(f"{name} {p.name}", p) for p in command.get_params(ctx)
                  if isinstance(p, (TyperArgument, TyperOption)) and plain_leaf(p) is not None
                  and isinstance(p.get_runtime_param(), PlainCoercion)]
    return found


def _cases(annotation: Any, many: bool) -> list[Any]:
    if many:  # list[X]
        return [tuple(SAMPLES[annotation.__args__[0]][:3]), (), "not-a-list", None]
    if getattr(annotation, "__origin__", None) is tuple:  # tuple[X, Y]
        columns = [SAMPLES[arg] for arg in annotation.__args__]
        pairs = [tuple(column[i] for column in columns) for i in range(3)]
        return [*pairs, pairs[0][:1], (*pairs[0], pairs[0][0]), "ab", ["a", "b"], None]
    return [*SAMPLES[annotation], None]


def test_plain_values_are_typers_values() -> None:
    """Every parameter the command line converts itself (those of the commands declared with
    ``PlainParamsCommand``, and the group's own) gives typer's value or typer's error
    for each sample, well formed or not (pydantic decides the odd ones, as before)."""
    params = _plain_params()
    names = {name for name, _ in params}
    assert {"run jobs", "run force", "run file", "run workdir", "corral help", "runs compare",
            "logs attempt"} <= names
    ctx = typer.main.get_command(app).make_context("corral", [], resilient_parsing=True)
    for name, param in params:
        ours = param.get_runtime_param()
        assert isinstance(ours, PlainCoercion)
        typers = type(param).get_runtime_param(param)  # the class's: typer's own conversion
        annotation: Any = param.type_descriptor.annotation
        cases = _cases(annotation, ours.many)
        for value in cases:
            assert _converted(ours.coerce, value, param, ctx) == \
                _converted(typers.coerce, value, param, ctx), (name, value)


def test_cached_run_imports_no_pydantic(project: Project) -> None:
    """A run converts its options without pydantic (and registers the commands of its own
    module only), and so does ``corral runs``; a bad value still gets typer's error."""
    pipe = project.file("sums.py")
    assert invoke("run", pipe, "--n", "2", "-q").exit_code == 0
    probe = ("import sys, runpy; sys.argv = ['corral', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('corral', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "print('PYDANTIC' if 'pydantic' in sys.modules else 'NOPYDANTIC',\n"
             "      'STATUS' if 'corral.cli.status' in sys.modules else 'RUNONLY', code)")
    out = subprocess.run([sys.executable, "-c", probe, "run", pipe, "--n", "2", "-j", "2",  # noqa: S603
                          "--force", "write", "-C", str(project.wd), "--json"],
                         capture_output=True, text=True, check=True, cwd=project.wd).stdout
    assert '"state": "succeeded"' in out and out.split()[-3:] in (
        ["NOPYDANTIC", "RUNONLY", "None"], ["NOPYDANTIC", "RUNONLY", "0"]), out
    out = subprocess.run([sys.executable, "-c", probe, "runs", "-C", str(project.wd)],  # noqa: S603
                         capture_output=True, text=True, check=True, cwd=project.wd).stdout
    assert out.split()[-3:][:2] == ["NOPYDANTIC", "STATUS"], out  # corral runs neither
    bad = corral("run", pipe, "-j", "two", cwd=project.wd)
    assert bad.returncode == 2
    assert "Invalid value for '--jobs' / '-j'" in bad.stderr and "integer" in bad.stderr


@pytest.mark.parametrize(("args", "shown"), [(["--help"], "run"), (["run", "--help"], "--jobs")])
def test_help_still_shown(args: list[str], shown: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 0 and shown in result.output, result.output
