"""The Littlewood picture as a plain sequential script (the baseline of bench/overhead.py).

    python sequential.py --degree 16 --size 200 --out littlewood.png

Same computation as pipeline.py, same chunks, one after the other in one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from littlewood_math import chunk_histogram, prefixes, save_png, sum_histograms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--degree", type=int, default=16)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--out", default="littlewood.png")
    parser.add_argument("--quiet", action="store_true", help="do not print the summary line")
    ns = parser.parse_args(argv)
    start = time.perf_counter()
    parts = [chunk_histogram(ns.degree, p, ns.size) for p in prefixes(ns.degree)]
    path = save_png(sum_histograms(parts), ns.out)
    if not ns.quiet:
        print(f"{path} ({len(parts)} chunks, {time.perf_counter() - start:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
