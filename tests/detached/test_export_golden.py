"""Golden files of ``corral export``: the script and the array job script, as a person reads them.

Paths, the run id, the date and the Python interpreter are replaced by placeholders before the
comparison. After a deliberate change of the scripts, rewrite the files with
``CORRAL_UPDATE_GOLDEN=1 pytest tests/detached/test_export_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import corral
from corral.api import RunConfig
from corral.export import export_script
from corral.store import Store

from .test_detach import PIPE

GOLDEN = Path(__file__).with_name("golden")


def _normalised(text: str, tmp_path: Path, run_id: str) -> str:
    text = text.replace(str(tmp_path), "<tmp>").replace(run_id, "<run>")
    text = text.replace(sys.executable, "<python>")
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "<date>", text)


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CORRAL_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; write it with CORRAL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.mark.parametrize("fmt", ["sbatch", "sge"])
def test_exported_chain_matches_golden(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "pipe_detach.py").write_text(PIPE)
    pipe = corral.load_pipeline(tmp_path / "pipe_detach.py", "chain")
    dest = export_script(pipe, {}, RunConfig(executor="local", workdir=tmp_path, new=True),
                         tmp_path / "pipeline.sh", fmt=fmt)
    run_id = Store.open(tmp_path).list_runs(1)[0]["id"]
    script = _normalised(dest.read_text(), tmp_path, run_id)
    # one line per stage: offset, copy, the three squares as one array, total
    assert script.count("jid_square=$(") == 1 and len(re.findall(r"^jid_\w+=\$\(", script,
                                                                   re.M)) == 4
    assert subprocess.run(["bash", "-n", str(dest)]).returncode == 0  # noqa: S603
    _check(f"chain.{fmt}.sh", script)
    array = (tmp_path / "pipeline.jobs" / "square.sh").read_text()
    _check(f"chain.{fmt}.square.sh", _normalised(array, tmp_path, run_id))


ELEMENTWISE = '''
from corral import pipeline, task


@task
def square(x: int) -> int:
    return x * x


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(values: list) -> int:
    return sum(values)


@pipeline
def chained():
    return total(double.map(square.map([1, 2, 3])))
'''


@pytest.mark.parametrize("fmt", ["sbatch", "sge"])
def test_exported_map_over_map_matches_golden(tmp_path: Path, fmt: str) -> None:
    """A map over a map's elements: one array line waiting element-wise (aftercorr /
    -hold_jid_ad); on SGE each element's attempt directory names its upstream element."""
    (tmp_path / "pipe_ew.py").write_text(ELEMENTWISE)
    pipe = corral.load_pipeline(tmp_path / "pipe_ew.py", "chained")
    dest = export_script(pipe, {}, RunConfig(executor="local", workdir=tmp_path, new=True),
                         tmp_path / "pipeline.sh", fmt=fmt)
    run_id = Store.open(tmp_path).list_runs(1)[0]["id"]
    script = _normalised(dest.read_text(), tmp_path, run_id)
    assert len(re.findall(r"^jid_\w+=\$\(", script, re.M)) == 3, script
    assert subprocess.run(["bash", "-n", str(dest)]).returncode == 0  # noqa: S603
    _check(f"map_over_map.{fmt}.sh", script)
    requires = sorted(tmp_path.rglob("*-double_*_.1/requires.txt"))
    if fmt == "sge":
        ups = [Path(r.read_text().strip()).name for r in requires]
        assert [u.split("-", 1)[1] for u in ups] == [f"square_{i}_.1" for i in range(3)]
    else:
        assert requires == []  # aftercorr waits for success itself
