"""Pi by the midpoint rule: MPI ranks inside each task, a chunked input file: a Corral pipeline.

    corral run examples/mpi_pi/pipeline.py --intervals 2000 --chunks 4 -j 4

The integral of 4 / (1 + x^2) over [0, 1] is pi. ``intervals.txt`` splits [0, 1] into
``intervals`` sub-intervals, one ``start end`` line each. ``corral.chunks`` cuts the file into
``chunks`` ranges of whole lines (by seeking: nothing is copied); one ``integrate`` task per
chunk runs on 4 MPI ranks (``launcher="mpi"``: ``mpirun -np 4`` locally and on Grid Engine,
``srun`` on SLURM), each rank taking every 4th line of the chunk, and ``MPI.allreduce`` sums
their parts; rank 0's value is the task's. ``pi`` adds the chunks' integrals in chunk order.
"""

from __future__ import annotations

import math
from pathlib import Path

import corral
from corral import Resources, pipeline, task

RANKS = 4


def write_intervals(path: Path, n: int) -> Path:
    """``path`` holding n equal sub-intervals of [0, 1], one ``start end`` line each; written
    only when its content would change (an unchanged file keeps every chunk's cache key)."""
    text = "".join(f"{i / n!r} {(i + 1) / n!r}\n" for i in range(n))
    path = path.resolve()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@task(resources=Resources(tasks=RANKS), launcher="mpi")
def integrate(chunk: corral.Chunk, steps: int) -> float:
    """The integral of 4 / (1 + x^2) over the chunk's intervals, ``steps`` midpoints each;
    rank r of the task takes lines r, r + size, ... and the ranks' parts are summed."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    part = 0.0
    with chunk.open() as fh:
        for i, line in enumerate(fh):
            if i % comm.size != comm.rank:
                continue
            a, b = (float(x) for x in line.split())
            h = (b - a) / steps
            part += h * sum(4.0 / (1.0 + (a + (k + 0.5) * h) ** 2) for k in range(steps))
    total = float(comm.allreduce(part, op=MPI.SUM))
    print(f"chunk {chunk.index} rank {comm.rank} of {comm.size}: {part:.15f}", flush=True)
    return total


@task
def pi(parts: list[float]) -> float:
    """The chunks' integrals summed in chunk order."""
    value = float(corral.concat(parts))
    print(f"pi ~ {value:.15f} (error {value - math.pi:.1e})")
    return value


@pipeline
def mpi_pi(intervals: int = 1000, chunks: int = 4, steps: int = 100,
           path: str = "intervals.txt") -> float:
    """Pi from ``chunks`` MPI tasks of 4 ranks over ``intervals`` sub-intervals of [0, 1]."""
    source = write_intervals(Path(path), intervals)
    return pi([integrate(c, steps) for c in corral.chunks(source, n=chunks)])
