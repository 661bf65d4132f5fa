"""The CPU a local pool worker spends per attempt of a no-op task, outside the task itself.

    python bench/worker.py                  # 10,000 attempts, best of 3
    python bench/worker.py --profile        # and the worker loop's top functions (cProfile)

The worker loop of the local executor (:func:`corral.worker.pool.worker_main`) serves, in this
process, chunks of 32 attempts of a no-op task built as the engine builds them (payload,
variables, attempt folder), and its CPU time is divided by the attempts: what each attempt
costs in measuring it (CPU, memory, I/O counters), pointing its output at the attempt's logs,
setting its variables, unpickling its payload and pickling its result. On the 2-CPU test
machine this cost competes with the engine for the CPUs (``bench/interactive.py``).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pickle
import pstats
import sys
import tempfile
import time
from typing import Any

from corral.engine.specs import attempt_env
from corral.hashing import digest_bytes
from corral.pickling import dumps
from corral.resources import Resources
from corral.worker.execute import PythonPayload
from corral.worker.pool import worker_main

CHUNK = 32


def noop(i: int) -> None:
    return None


class _Conn:
    """Stands for the worker's pipe: hands it the chunks, counts what it sends back."""

    def __init__(self, chunks: list[list[tuple[Any, ...]]]) -> None:
        self._chunks = iter([*chunks, None])
        self.sent = 0

    def recv(self) -> list[tuple[Any, ...]] | None:
        return next(self._chunks)

    def send(self, results: Any) -> None:
        self.sent += len(pickle.dumps(results))


def chunks(count: int, root: str) -> list[list[tuple[Any, ...]]]:
    func = dumps(noop)
    digest = digest_bytes(func)
    env = attempt_env(1, Resources())
    out = []
    for start in range(0, count, CHUNK):
        out.append([(f"bench.{i}.1", pickle.dumps(PythonPayload(digest, func, dumps(((i,), {})))),
                     env, os.path.join(root, f"{i}-noop.1"))
                    for i in range(start, min(count, start + CHUNK))])
    return out


def one_round(count: int, profile: cProfile.Profile | None = None) -> float:
    """Worker CPU seconds per attempt, serving ``count`` attempts."""
    with tempfile.TemporaryDirectory(prefix="corral-bench-worker-") as root:
        conn = _Conn(chunks(count, root))
        saved = os.dup(1), os.dup(2)  # the worker points 1 and 2 at its scratch files
        try:
            begin = time.thread_time()
            if profile is not None:
                profile.enable()
            worker_main(conn, None, None)  # type: ignore[arg-type]  # (a stand-in pipe)
            if profile is not None:
                profile.disable()
            spent = time.thread_time() - begin
        finally:
            for fd, old in zip((1, 2), saved, strict=True):
                os.dup2(old, fd)
                os.close(old)
    return spent / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="attempts per round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best is shown")
    parser.add_argument("--profile", action="store_true", help="also a cProfile of one round")
    args = parser.parse_args(argv)
    if args.count < 1 or args.repeat < 1:
        parser.error("--count and --repeat must be >= 1")
    best = min(one_round(args.count) for _ in range(args.repeat))
    print(f"worker CPU per no-op attempt: {best * 1e6:.0f} us "
          f"(best of {args.repeat} rounds of {args.count:,}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    if args.profile:
        prof = cProfile.Profile()
        one_round(args.count, prof)
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
