"""The mathematics of the Littlewood example, from scratch with numpy and Pillow.

A *Littlewood polynomial* of degree ``D`` has every coefficient in {-1, +1}::

    p(z) = a_0 z^D + a_1 z^(D-1) + ... + a_D,      a_i in {-1, +1}

There are ``2^(D+1)`` of them and ``D * 2^(D+1)`` roots in all (with multiplicity). Their
density in the complex plane is a famous fractal-looking picture, concentrated near the unit
circle (every root lies in the annulus 1/2 < |z| < 2).

Symmetries used to do a quarter of the work, exactly:

* ``-p`` has the same roots as ``p``: fix ``a_0 = +1``.
* ``p(-z)`` (normalised to ``a_0 = +1``) has coefficients ``a_i * (-1)^i`` and the roots of
  ``p`` negated: fix ``a_1 = +1`` too, and add every root ``z`` *and* ``-z``.

These two involutions commute and no polynomial is fixed by a non-identity combination, so the
2^(D+1) polynomials fall into orbits of exactly four, each with exactly one *canonical*
member (``a_0 = a_1 = +1``). The full root multiset is ``2 x (R u -R)`` where ``R`` are the
roots of the 2^(D-1) canonical polynomials. (Real coefficients also make roots come in
conjugate pairs, but the eigenvalue solver finds both anyway, so that symmetry saves nothing.)

Work is split by *prefix*: the first ``k`` coefficients ``(a_0, ..., a_{k-1})``, with
``a_0 = a_1 = +1``, so there are ``2^(k-2)`` prefixes, each owning ``2^(D+1-k)`` canonical
polynomials. Roots come from companion matrices built in batches and solved together by
``np.linalg.eigvals`` on a stacked ``(n, D, D)`` array.

Histograms are ``size x size`` arrays of root counts over the square
``[-extent, extent] x [-extent, extent]``: ``counts[row, col]`` with columns by increasing
real part and rows by *decreasing* imaginary part (row 0 is the top of the image).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

DEFAULT_EXTENT = 1.6
"""Half-width of the plotted square. 2.0 would contain every Littlewood root; 1.6 shows the
interesting part larger and drops only a few roots (mostly real ones, near -2 and 2)."""

BATCH = 4096
"""Polynomials per ``np.linalg.eigvals`` call (bounds the temporary memory)."""

Counts = npt.NDArray[np.int64]


def n_polynomials(degree: int) -> int:
    """How many Littlewood polynomials of ``degree`` there are: 2^(degree+1)."""
    return int(2 ** (degree + 1))


def n_roots(degree: int) -> int:
    """How many roots (with multiplicity) all Littlewood polynomials of ``degree`` have."""
    return degree * n_polynomials(degree)


def prefix_length(degree: int, tasks: int = 32) -> int:
    """Length ``k`` of the coefficient prefix giving about ``tasks`` chunks (2^(k-2) of them).

    ``tasks`` is rounded down to a power of two and capped so that ``k <= degree + 1``.
    """
    if degree < 1:
        raise ValueError(f"degree={degree} must be >= 1")
    if tasks < 1:
        raise ValueError(f"tasks={tasks} must be >= 1")
    k = 2 + max(0, tasks.bit_length() - 1)
    return min(k, degree + 1)


def prefixes(degree: int, tasks: int = 32) -> list[tuple[int, ...]]:
    """The canonical coefficient prefixes splitting the work into ~``tasks`` chunks.

    Every prefix starts with ``(1, 1)``; together the chunks cover every canonical polynomial
    exactly once.
    """
    k = prefix_length(degree, tasks)
    return [(1, 1, *rest) for rest in itertools.product((1, -1), repeat=k - 2)]


def coefficients(degree: int, prefix: Sequence[int]) -> npt.NDArray[np.int8]:
    """All coefficient vectors ``(a_0, ..., a_D)`` starting with ``prefix``, shape (n, D+1)."""
    k = len(prefix)
    if not 1 <= k <= degree + 1:
        raise ValueError(f"prefix of length {k} does not fit degree {degree}")
    if any(c not in (1, -1) for c in prefix):
        raise ValueError(f"prefix {tuple(prefix)} must contain only +1 and -1")
    free = degree + 1 - k
    n = 2**free
    # bit j of the row number decides coefficient a_{k+j}: 0 -> +1, 1 -> -1
    bits = (np.arange(n, dtype=np.int64)[:, None] >> np.arange(free, dtype=np.int64)) & 1
    out = np.empty((n, degree + 1), dtype=np.int8)
    out[:, :k] = np.asarray(prefix, dtype=np.int8)
    out[:, k:] = (1 - 2 * bits).astype(np.int8)
    return out


def roots_of(coeffs: npt.ArrayLike) -> npt.NDArray[np.complex128]:
    """Roots of the polynomials whose coefficient rows (highest degree first) are ``coeffs``.

    Each row must have a non-zero leading coefficient. Returns shape (n, D), via the
    eigenvalues of stacked companion matrices.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError("coeffs must have shape (n, degree + 1) with degree >= 1")
    n, d = c.shape[0], c.shape[1] - 1
    out = np.empty((n, d), dtype=np.complex128)
    sub = np.arange(1, d)
    for start in range(0, n, BATCH):
        block = c[start : start + BATCH]
        m = np.zeros((block.shape[0], d, d), dtype=np.float64)
        m[:, 0, :] = -block[:, 1:] / block[:, :1]
        m[:, sub, sub - 1] = 1.0
        out[start : start + block.shape[0]] = np.linalg.eigvals(m)
    return out


def histogram(
    z: npt.ArrayLike, size: int, extent: float = DEFAULT_EXTENT, weight: int = 1
) -> Counts:
    """Count the points ``z`` per pixel of a ``size x size`` grid over the square of half-width
    ``extent`` (row 0 = largest imaginary part). Points outside the square are dropped."""
    if size < 1:
        raise ValueError(f"size={size} must be >= 1")
    pts = np.asarray(z, dtype=np.complex128).ravel()
    scale = size / (2.0 * extent)
    col = np.floor((pts.real + extent) * scale)
    row = np.floor((extent - pts.imag) * scale)
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    flat = row[inside].astype(np.int64) * size + col[inside].astype(np.int64)
    counts = np.bincount(flat, minlength=size * size).astype(np.int64)
    if weight != 1:
        counts *= weight
    return counts.reshape(size, size)


def chunk_histogram(
    degree: int, prefix: Sequence[int], size: int, extent: float = DEFAULT_EXTENT
) -> Counts:
    """Histogram of the roots of every Littlewood polynomial in the orbits of the canonical
    polynomials starting with ``prefix`` (``p``, ``-p``, ``p(-z)``, ``-p(-z)``).

    ``prefix`` must start with ``(1, 1)`` (as from :func:`prefixes`); summing over
    :func:`prefixes` gives the histogram of all ``2^(degree+1)`` polynomials.
    """
    if len(prefix) < 2 or tuple(prefix[:2]) != (1, 1):
        raise ValueError(f"prefix {tuple(prefix)} must start with (1, 1) (a canonical prefix)")
    r = roots_of(coefficients(degree, prefix))
    # each canonical root z stands for z (from p, -p) and -z (from p(-z), -p(-z))
    return histogram(np.concatenate([r.ravel(), -r.ravel()]), size, extent, weight=2)


def total_histogram(
    degree: int, size: int, extent: float = DEFAULT_EXTENT, tasks: int = 32
) -> Counts:
    """Sequential reference: the histogram of all roots, summed over every prefix chunk."""
    return sum_histograms(chunk_histogram(degree, p, size, extent) for p in prefixes(degree, tasks))


def sum_histograms(parts: Iterable[npt.ArrayLike]) -> Counts:
    """Add partial histograms (all of the same shape)."""
    total: Counts | None = None
    for part in parts:
        a = np.asarray(part, dtype=np.int64)
        if total is None:
            total = a.copy()
        elif a.shape != total.shape:
            raise ValueError(f"histograms of shapes {total.shape} and {a.shape} cannot be added")
        else:
            total += a
    if total is None:
        raise ValueError("no histograms to add")
    return total


# ---------------------------------------------------------------------------- rendering

INFERNO_ANCHORS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.00, (0, 0, 4)),
    (0.15, (31, 12, 72)),
    (0.30, (85, 15, 109)),
    (0.45, (136, 34, 106)),
    (0.60, (186, 54, 85)),
    (0.72, (227, 89, 51)),
    (0.85, (249, 140, 10)),
    (0.95, (249, 201, 50)),
    (1.00, (252, 255, 164)),
)
"""An inferno-like gradient: positions in [0, 1] and RGB colours, interpolated linearly."""


def colormap(
    t: npt.ArrayLike,
    anchors: Sequence[tuple[float, tuple[int, int, int]]] = INFERNO_ANCHORS,
) -> npt.NDArray[np.uint8]:
    """Map values in [0, 1] (clipped) to RGB, shape ``t.shape + (3,)``, dtype uint8."""
    v = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    pos = np.array([a[0] for a in anchors])
    rgb = np.array([a[1] for a in anchors], dtype=np.float64)
    channels = [np.interp(v, pos, rgb[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def shade(counts: npt.ArrayLike, clip_percentile: float = 99.5) -> npt.NDArray[np.float64]:
    """Log-scale counts to [0, 1]: 0 for empty pixels, 1 from the ``clip_percentile``-th
    percentile of the non-empty pixels up (so the few very bright pixels on the real axis do
    not darken the rest of the picture)."""
    c = np.asarray(counts, dtype=np.float64)
    filled = c[c > 0]
    if filled.size == 0:
        return np.zeros_like(c)
    top = float(np.log1p(np.percentile(filled, clip_percentile)))
    shaded: npt.NDArray[np.float64] = np.clip(np.log1p(c) / top, 0.0, 1.0)
    return shaded


def render(counts: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """RGB image (rows, cols, 3) of a root-count histogram, log-scaled and colour-mapped."""
    return colormap(shade(counts))


def save_png(counts: npt.ArrayLike, out: str | os.PathLike[str]) -> Path:
    """Render ``counts`` and write it as a PNG at ``out`` atomically (temp file + rename).

    Returns the absolute path of the image.
    """
    from PIL import Image

    path = Path(out).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(render(counts))
    # a unique name in the same directory (so os.replace is atomic); created with open() rather
    # than mkstemp so that the file gets the usual permissions (0666 & ~umask), not 0600
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            image.save(fh, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
