"""Entry point on compute nodes: ``python -m corral.worker ATTEMPT_DIR [--cwd DIR]`` or
``python -m corral.worker --array LIST_FILE [--cwd DIR]`` (one attempt directory per line,
selected by the scheduler's array index: SLURM_ARRAY_TASK_ID, SGE_TASK_ID, PBS_ARRAY_INDEX,
LSB_JOBINDEX; or ``--index N``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from corral.worker.execute import run_attempt_dir
from corral.worker.render import prepare_attempt

ARRAY_INDEX_VARS = ("SLURM_ARRAY_TASK_ID", "SGE_TASK_ID", "PBS_ARRAY_INDEX", "PBS_ARRAYID",
                    "LSB_JOBINDEX", "CORRAL_ARRAY_INDEX")


def array_index() -> int:
    for var in ARRAY_INDEX_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    raise SystemExit("corral.worker --array: no array index variable is set")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.worker")
    parser.add_argument("attempt_dir", nargs="?")
    parser.add_argument("--array", help="file listing attempt directories, one per line")
    parser.add_argument("--index", type=int, help="array index (default: from the scheduler)")
    parser.add_argument("--cwd", help="directory to run the task in")
    ns = parser.parse_args(argv)
    if ns.array:
        lines = Path(ns.array).read_text().splitlines()
        index = ns.index if ns.index is not None else array_index()
        # arrays are 1-based on every scheduler we submit to
        attempt_dir = lines[index - 1]
    elif ns.attempt_dir:
        attempt_dir = ns.attempt_dir
    else:
        parser.error("give an attempt directory or --array LIST_FILE")
    cwd = Path(ns.cwd) if ns.cwd else None
    if cwd is not None:
        os.chdir(cwd)
    not_run = prepare_attempt(Path(attempt_dir))  # upstream checks, commands rendered here
    if not_run is not None:
        return not_run
    return run_attempt_dir(Path(attempt_dir), cwd)


if __name__ == "__main__":
    sys.exit(main())
