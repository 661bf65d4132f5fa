"""What an install brings, seen from the real command line: tracebacks that name the user's
file whatever cloudpickle release is installed, and one-line errors (exit 2) naming the extra to
install when an optional dependency is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .clihelp import CORRAL, Project, invoke, one_line_error

NEWEST = "newest"


@pytest.fixture(scope="module")
def newest_cloudpickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the newest cloudpickle release from the package index, to be put in
    front of the locked one with PYTHONPATH."""
    target = tmp_path_factory.mktemp("cloudpickle-newest")
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(target),
         "cloudpickle"], capture_output=True, text=True, timeout=300, check=False,
    )
    if done.returncode != 0:
        message = f"cannot install the newest cloudpickle: {done.stderr.strip()[-500:]}"
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return target


def _corral(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CORRAL, *args], cwd=cwd, capture_output=True, text=True,  # noqa: S603
                          timeout=120, env=env, check=False)


@pytest.mark.parametrize("release", ["locked", NEWEST])
def test_task_traceback_names_the_pipeline_file(
    project: Project, release: str, request: pytest.FixtureRequest
) -> None:
    env = {**os.environ, "COLUMNS": "200"}
    if release == NEWEST:
        folder = request.getfixturevalue("newest_cloudpickle")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    where = subprocess.run(
        [sys.executable, "-c", "import cloudpickle; print(cloudpickle.__file__, cloudpickle.__version__)"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout
    if release == NEWEST:  # the run below really uses the newest release
        assert where.startswith(env["PYTHONPATH"].split(os.pathsep)[0]), where

    run = _corral(["run", project.file("sums.py"), "--fail", "true", "-q"], project.wd, env)
    assert run.returncode == 1, run.stderr
    logs = _corral(["logs", "latest", "boom"], project.wd, env)
    assert logs.returncode == 0, logs.stderr
    assert "<dynamic-code>" not in logs.stdout, (where, logs.stdout)
    assert f'File "{project.file("sums.py")}", line 15, in boom' in logs.stdout, (where, logs.stdout)
    assert 'raise ValueError(f"bad value [/n] {x}")' in logs.stdout  # the source line is shown


# A package that cannot be imported, put first on PYTHONPATH: the install looks as it would
# without the extra (the dev install has every extra).
_BLOCKER = "raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"


def _without(tmp_path: Path, *modules: str) -> dict[str, str]:
    blocked = tmp_path / "blocked"
    for name in modules:
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(_BLOCKER.format(name=name))
    pythonpath = os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": pythonpath, "COLUMNS": "80"}


def _assert_one_line(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    one_line_error(done.stderr, *words)


def test_postgres_url_without_psycopg(project: Project, tmp_path: Path) -> None:
    env = _without(tmp_path, "psycopg", "psycopg2")
    url = "postgresql+psycopg://corral@127.0.0.1:5432/nowhere"
    for args in (["run", project.file("sums.py"), "--db", url], ["runs", "--db", url]):
        _assert_one_line(_corral(args, project.wd, env), "'psycopg'", "pip install 'corral[postgres]'")
    assert not (project.wd / ".corral" / "state.db").exists()  # nothing ran anywhere else


@pytest.mark.parametrize(("option", "module", "feature"), [
    ("--ro-crate", "rocrate", "RO-Crate export"),
    ("--prov", "prov", "PROV-JSON export"),
])
def test_export_without_its_package(
    project: Project, tmp_path: Path, option: str, module: str, feature: str
) -> None:
    assert invoke("run", project.file("sums.py"), "-q").exit_code == 0
    target = tmp_path / "export-target"
    done = _corral(["export", "latest", option, str(target)], project.wd, _without(tmp_path, module))
    _assert_one_line(done, feature, f"'{module}'", "pip install")
    assert not target.exists()


def test_report_without_plotly(project: Project, tmp_path: Path) -> None:
    assert invoke("run", project.file("sums.py"), "-q").exit_code == 0
    done = _corral(["report", "latest", "-o", str(tmp_path / "r.html")], project.wd,
                   _without(tmp_path, "plotly"))
    _assert_one_line(done, "HTML report", "'plotly'", "pip install")


def test_dask_executor_without_distributed(project: Project, tmp_path: Path) -> None:
    done = _corral(["run", project.file("sums.py"), "-e", "dask"], project.wd,
                   _without(tmp_path, "distributed"))
    _assert_one_line(done, "executor 'dask'", "'distributed'", "pip install 'corral[dask]'")


# ------------------------------------------------------------------ shell commands' fields

BRACES = textwrap.dedent('''
    from corral import pipeline, shell

    @pipeline
    def inline():
        shell("echo start > {output}", outputs="first.txt", name="first")
        shell("""python3 -c "s=1; print(f'{s}')" > {output}""", outputs="x.txt", name="pyinline")

    @pipeline
    def escaped():
        shell("""python3 -c "s=1; print(f'{{s}}')" > {output}""", outputs="x.txt", name="pyinline")

    @pipeline
    def wrong_param():
        shell("echo {params.n} > {output}", outputs="n.txt", params={"m": 1}, name="echo_n")

    @pipeline
    def lone():
        shell("echo { > {output}", outputs="l.txt", name="lone")
    ''')


def test_unknown_brace_field_is_a_graph_error_before_anything_runs(project: Project) -> None:
    (project.root / "braces.py").write_text(BRACES)
    done = _corral(["run", project.file("braces.py"), "inline"], project.wd, {**os.environ, "COLUMNS": "80"})
    _assert_one_line(done, "pyinline", "{s}", "{{ and }}")
    assert not (project.wd / "first.txt").exists()  # nothing ran
    assert "x.txt" not in os.listdir(project.wd)

    done = _corral(["run", project.file("braces.py"), "wrong_param"], project.wd, dict(os.environ))
    _assert_one_line(done, "echo_n", "{params.n}", "it has: m")
    done = _corral(["run", project.file("braces.py"), "lone"], project.wd, dict(os.environ))
    _assert_one_line(done, "lone", "malformed", "{{ and }}")

    ok = _corral(["run", project.file("braces.py"), "escaped", "-q"], project.wd, dict(os.environ))
    assert ok.returncode == 0, ok.stderr
    assert (project.wd / "x.txt").read_text() == "1\n"


# ------------------------------------------------------------------ output folders

FOLDERS = textwrap.dedent('''
    from corral import pipeline, shell

    @pipeline
    def folders():
        a = shell("echo a,1 > {output}", outputs="csv/a.csv", name="to_csv")
        return shell("cat {input} > {output.copy}", inputs=a,
                     outputs={"copy": "deep/er/b.csv"}, name="copy")
    ''')


def test_declared_outputs_get_their_folders(project: Project) -> None:
    (project.root / "folders.py").write_text(FOLDERS)
    done = _corral(["run", project.file("folders.py"), "-q"], project.wd, dict(os.environ))
    assert done.returncode == 0, done.stderr
    assert (project.wd / "csv" / "a.csv").read_text() == "a,1\n"
    assert (project.wd / "deep" / "er" / "b.csv").read_text() == "a,1\n"
