"""Roots of all Littlewood polynomials of a degree, as a density picture: a Corral pipeline.

    corral run examples/littlewood/pipeline.py --degree 14 -j 2

One ``roots`` task per coefficient prefix (a scatter of 32 for degree >= 6) computes the roots
of its polynomials and returns their histogram; ``heatmap`` gathers the partial histograms,
sums them and writes the PNG. See README.md and littlewood_math.py for the mathematics.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # `corral run` does this; also allow a plain import
    sys.path.insert(0, str(_HERE))

import littlewood_math as lm  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from corral import Resources, pipeline, task  # noqa: E402

MATH_VERSION = hashlib.sha256(Path(lm.__file__).read_bytes()).hexdigest()[:12]
"""Mixed into the cache keys: Corral hashes a task's own module, not littlewood_math.py."""


@task(
    resources=Resources(cores=1, memory="2G", walltime="10m"),
    retries=2,
    version=MATH_VERSION,
)
def roots(degree: int, prefix: tuple[int, ...], size: int) -> npt.NDArray[np.int64]:
    """Histogram (size x size counts) of the roots of the polynomials starting with ``prefix``
    and of their symmetric images (see littlewood_math.chunk_histogram)."""
    return lm.chunk_histogram(degree, prefix, size)


@task(version=MATH_VERSION)
def heatmap(parts: list[npt.NDArray[np.int64]], size: int, out: str) -> Path:
    """Sum the partial histograms and write the picture to ``out`` (atomically)."""
    total = lm.sum_histograms(parts)
    if total.shape != (size, size):
        raise ValueError(f"partial histograms are {total.shape}, expected {(size, size)}")
    return lm.save_png(total, out)


@pipeline
def littlewood(degree: int = 16, size: int = 200, out: str = "littlewood.png") -> Path:
    """Density of the roots of the 2^(degree+1) Littlewood polynomials, as a PNG."""
    parts = roots.map(degree=degree, prefix=lm.prefixes(degree), size=size)
    return heatmap(parts, size, out)
