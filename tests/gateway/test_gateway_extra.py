"""Without the ``gateway`` extra (``make demo``'s install has no FastAPI), ``corral gateway
serve`` says in one line what to install; every other command still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.modules["fastapi"] = None  # as if not installed: importing it raises ImportError
sys.argv = ["corral", *sys.argv[1:]]
from corral.cli.app import main
main()
"""


def _corral(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,  # noqa: S603
                          cwd=tmp_path, timeout=60, check=False)


def test_serve_without_the_extra_names_it(tmp_path: Path) -> None:
    proc = _corral(tmp_path, "gateway", "serve", "--port", "1")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "corral gateway serve needs the Python package 'fastapi'" in lines[0]
    assert "pip install 'corral[gateway]'" in lines[0]
    assert _corral(tmp_path, "runs").returncode == 0
