"""A notebook, executed headless with nbclient, maps a function defined in one of its cells on
the local executor (cell-defined functions live in ``__main__`` and travel by value), with a
progress display updated in place in the cell's output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import corral

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

CELLS = [
    "import corral",
    "def cell_square(x):\n    return x * x + OFFSET\nOFFSET = 1",
    "with corral.Executor(workdir={wd!r}, jobs=2, name='notebook') as ex:\n"
    "    values = list(ex.map(cell_square, range(6)))\n"
    "    run_id = ex.run_id\n"
    "print(values)",
]


def _execute(wd: Path) -> list[Any]:
    """The outputs of the notebook's last cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.format(wd=str(wd))) for c in CELLS]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(wd)}})
    client.execute()
    outputs: list[Any] = nb.cells[-1].outputs
    return outputs


def _text(outputs: list[Any]) -> str:
    return "".join(o.get("text", "") for o in outputs)


def test_a_notebook_maps_a_cell_defined_function(wd: Path) -> None:
    outputs = _execute(wd)
    assert "[1, 2, 5, 10, 17, 26]" in _text(outputs)
    # one progress display, updated in place to its final count (it was created at 0 / 0)
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert len(shown) == 1, outputs
    assert "notebook: 6 / 6 calls done" in shown[0]["data"]["text/html"], shown
    rows = [r for r in corral.runs(wd) if r["pipeline"] == "notebook"]
    assert rows and rows[0]["state"] == "succeeded" and rows[0]["n_tasks"] == 6
    # a new kernel, the same cells: every call is a cache hit
    outputs = _execute(wd)
    assert "[1, 2, 5, 10, 17, 26]" in _text(outputs)
    assert any("6 cached" in o.get("data", {}).get("text/html", "") for o in outputs), outputs
    latest = corral.attach("latest", wd)
    assert [t["cached"] for t in latest.tasks()] == [True] * 6
