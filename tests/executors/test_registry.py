"""Executors by name: the ``corral.executors`` entry-point group, Corral's own executors
registered there like any other, :func:`corral.executors.register` for tests, and a third-party
executor installed with pip used through ``corral run --executor NAME``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from corral.errors import ConfigError
from corral.executors import (
    EXECUTORS,
    GROUP,
    available,
    create_executor,
    executor_class,
    register,
    unregister,
)
from corral.executors.base import Completion, Executor, ExecutorContext, Listener, TaskSpec
from corral.executors.local import LocalExecutor

BUILTIN = ["dask", "local", "lsf", "pbs", "sge", "slurm", "ssh", "tes"]


def test_builtins_come_from_corrals_own_entry_points() -> None:
    ours = {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.dist and ep.dist.name == "corral"}
    assert sorted(ours) == BUILTIN
    for name in BUILTIN:
        assert EXECUTORS[name].target == ours[name] and EXECUTORS[name].builtin
        cls = executor_class(name)
        assert cls.kind == name and issubclass(cls, Executor)
    assert set(BUILTIN) <= set(available())


def test_unknown_name_is_one_line_listing_the_choices() -> None:
    with pytest.raises(ConfigError) as info:
        executor_class("slurmm")
    message = str(info.value)
    assert "\n" not in message and message.startswith("unknown executor 'slurmm'; choose one of ")
    assert ", ".join(BUILTIN) in message


class Quiet(Executor):
    """Runs nothing; every attempt succeeds at once."""

    kind = "quiet"

    def __init__(self, ctx: ExecutorContext, options: dict[str, object]) -> None:
        self.ctx, self.options, self.done = ctx, options, list[Completion]()

    @classmethod
    def from_options(cls, options: dict[str, object], ctx: ExecutorContext) -> Quiet:
        return cls(ctx, options)

    def start(self, listener: Listener) -> None:
        return None

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        return None

    def poll(self, timeout: float) -> list[Completion]:
        return []

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        return None

    def shutdown(self) -> None:
        return None


class Misnamed(Quiet):
    kind = "other"


NOT_AN_EXECUTOR = object()


@pytest.fixture
def registered() -> Iterator[None]:
    register("quiet", f"{__name__}:Quiet")
    register("misnamed", f"{__name__}:Misnamed")
    register("notone", f"{__name__}:NOT_AN_EXECUTOR")
    register("local", f"{__name__}:Quiet")  # registered in this process: ahead of the entry point
    yield
    for name in ("quiet", "misnamed", "notone", "local"):
        unregister(name)


def test_register_and_unregister(registered: None, tmp_path: Path) -> None:
    ctx = ExecutorContext("r1", tmp_path / "work", tmp_path, 2)
    made = create_executor("quiet", {"colour": "blue"}, ctx)
    assert isinstance(made, Quiet) and made.options == {"colour": "blue"} and made.ctx is ctx
    assert "quiet" in available()
    with pytest.raises(ConfigError, match=r"has kind = 'other'; its kind must be its registered name"):
        executor_class("misnamed")
    with pytest.raises(ConfigError, match=r"is not a subclass of corral.executors.base.Executor"):
        executor_class("notone")
    with pytest.raises(ConfigError, match=r"kind = 'quiet'"):  # the override is what is used
        executor_class("local")
    unregister("quiet")
    unregister("local")
    assert "quiet" not in available() and executor_class("local") is LocalExecutor
    with pytest.raises(ValueError, match="module:Class"):
        register("bad", "no_colon_here")


# ---------------------------------------------------------------------------------- a real plug-in

PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "corral-echo-plugin"
version = "0.3.0"

[project.entry-points."corral.executors"]
echo = "corral_echo:EchoExecutor"
broken = "corral_echo_broken:BrokenExecutor"

[tool.setuptools]
py-modules = ["corral_echo", "corral_echo_broken"]
"""

PLUGIN_MODULE = '''
"""A third-party executor: the local one, leaving a note of each attempt it was given."""
from pathlib import Path
from corral.executors.local import LocalExecutor


class EchoExecutor(LocalExecutor):
    kind = "echo"

    @classmethod
    def from_options(cls, options, ctx):
        options = dict(options)
        note = Path(ctx.cwd, options.pop("note", "echo-notes.txt"))
        executor = super().from_options(options, ctx)
        executor.note = note
        return executor

    def submit(self, batch):
        with self.note.open("a") as fh:
            fh.writelines(f"{spec.name}\\n" for spec in batch)
        super().submit(batch)
'''

PIPE = '''
from corral import pipeline, shell

@pipeline
def two():
    a = shell("echo a > {output}", outputs="a.txt", name="first")
    return shell("cat {input} > {output}", inputs=a, outputs="b.txt", name="second")
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plug-in, built from source and installed with pip into a directory of its own."""
    src = tmp_path_factory.mktemp("plugin-src")
    (src / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (src / "corral_echo.py").write_text(PLUGIN_MODULE)
    (src / "corral_echo_broken.py").write_text("import corral_no_such_dependency  # noqa\n")
    target = tmp_path_factory.mktemp("plugin-site")
    proc = subprocess.run(  # noqa: S603 - a local directory, no index is asked
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert any(target.glob("corral_echo_plugin-0.3.0.dist-info/entry_points.txt"))
    return target


def _corral(cwd: Path, plugin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "corral", *args], cwd=cwd, env=env,  # noqa: S603
                          capture_output=True, text=True, timeout=120)


def test_pip_installed_executor_runs_a_pipeline(plugin_path: Path, tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(PIPE)
    (tmp_path / "corral.toml").write_text('[executors.noted]\nkind = "echo"\nnote = "profile-notes.txt"\n')
    done = _corral(tmp_path, plugin_path, "run", "two.py", "--executor", "echo", "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b.txt").read_text() == "a\n"
    assert (tmp_path / "echo-notes.txt").read_text().split() == ["first", "second"]
    done = _corral(tmp_path, plugin_path, "run", "two.py", "--executor", "noted", "--no-cache", "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "profile-notes.txt").read_text().split() == ["first", "second"]


def test_plugin_errors_are_one_line(plugin_path: Path, tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(PIPE)
    broken = _corral(tmp_path, plugin_path, "run", "two.py", "--executor", "broken", "-q")
    assert broken.returncode == 2, broken.stderr
    lines = broken.stderr.strip().splitlines()
    assert len(lines) == 1, broken.stderr
    assert "executor 'broken' from package 'corral-echo-plugin' failed to load" in lines[0]
    assert "corral_no_such_dependency" in lines[0] and "uninstall corral-echo-plugin" in lines[0]
    unknown = _corral(tmp_path, plugin_path, "run", "two.py", "--executor", "nosuch", "-q")
    assert unknown.returncode == 2
    lines = unknown.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown executor or profile 'nosuch'" in lines[0], unknown.stderr
    assert "broken, dask, echo, local, lsf, pbs, sge, slurm, ssh" in lines[0]
