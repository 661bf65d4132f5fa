"""A task that writes a lot to stdout: Corral's cost next to writing that file directly.

    python bench/task_output.py            # 1 GiB
    python bench/task_output.py --mb 200   # smaller

Three fresh processes, each timed (wall clock) and measured (peak RSS from ``wait4``: the
process and every process it waited for, so the engine and its pool workers):

* ``python`` writing the same lines to a file (the peer: what writing that file costs);
* ``corral run`` of a one-task pipeline printing 1 MiB (Corral's fixed cost);
* ``corral run`` of the same pipeline printing ``--mb`` MiB to its stdout.log.

The output of a task goes from its descriptor 1 straight into its ``stdout.log`` (see
``corral.worker.output``), so the last row's peak RSS should be the second's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

WRITE = textwrap.dedent('''
    import sys
    def loud(mb):
        block = ("x" * 1023 + "\\n") * 1024
        for _ in range(mb):
            sys.stdout.write(block)
        print("the last line")
        return mb
    ''')

PIPELINE = WRITE + textwrap.dedent('''
    from corral import pipeline, task
    loud = task(loud)

    @pipeline
    def noise(mb: int = 1):
        return loud(mb)
    ''')

CORRAL = str(Path(sys.executable).parent / "corral")


def measure(argv: list[str], cwd: Path, stdout: int | None = subprocess.DEVNULL
            ) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of ``argv`` run to its end."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=stdout)  # noqa: S603 - our own argv
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024, help="MiB the task writes")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corral-bench-out-") as tmp:
        root = Path(tmp)
        (root / "loud.py").write_text(PIPELINE)
        with open(root / "peer.log", "wb") as out:
            peer = measure([sys.executable, "-c", WRITE + f"loud({ns.mb})"], root, out.fileno())
        small = measure([CORRAL, "run", "loud.py", "--mb", "1"], root)
        big = measure([CORRAL, "run", "loud.py", "--mb", str(ns.mb)], root)
        logs = list(root.glob(".corral/work/*/*loud*/stdout.log"))
        size = max((p.stat().st_size for p in logs), default=0)
    print("| what | wall (s) | peak RSS (MiB) |\n|---|---|---|")
    for name, (wall, rss) in (
        (f"python writing {ns.mb} MiB to a file", peer),
        ("corral run, task printing 1 MiB", small),
        (f"corral run, task printing {ns.mb} MiB", big),
    ):
        print(f"| {name} | {wall:.2f} | {rss / 2**20:.0f} |")
    print(f"\nlargest stdout.log: {size / 2**20:.0f} MiB; "
          f"Corral's extra time for the output: {big[0] - small[0] - peer[0]:+.2f} s; "
          f"extra peak RSS: {(big[1] - small[1]) / 2**20:+.0f} MiB")


if __name__ == "__main__":
    main()
