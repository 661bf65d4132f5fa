"""Correctness of the Littlewood example's mathematics (examples/littlewood/littlewood_math.py)."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "littlewood"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("littlewood_math", EXAMPLE / "littlewood_math.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("littlewood_math", module)
    spec.loader.exec_module(module)
    return module


lm = _load()


def all_polynomials(degree: int) -> list[tuple[int, ...]]:
    return list(itertools.product((1, -1), repeat=degree + 1))


def brute_force_roots(degree: int) -> np.ndarray:
    """Every root of every Littlewood polynomial, with np.roots, no symmetry tricks."""
    return np.concatenate([np.roots(c) for c in all_polynomials(degree)])


@pytest.mark.parametrize("degree", [1, 2, 3, 5])
def test_roots_match_np_roots_for_every_polynomial(degree: int) -> None:
    coeffs = np.array(all_polynomials(degree))
    ours = lm.roots_of(coeffs)
    assert ours.shape == (2 ** (degree + 1), degree)
    for row, got in zip(coeffs, ours, strict=True):
        want = np.roots(row)
        # match as multisets: sort by (real, imag) after rounding away solver noise
        key = lambda z: (round(z.real, 6), round(z.imag, 6))  # noqa: E731
        assert sorted(map(key, got)) == sorted(map(key, want)), row


def test_roots_satisfy_the_polynomial() -> None:
    coeffs = lm.coefficients(9, (1, 1, -1))
    r = lm.roots_of(coeffs)
    for row, zs in zip(coeffs, r, strict=True):
        assert np.allclose(np.polyval(row.astype(float), zs), 0, atol=1e-8)


@pytest.mark.parametrize(("degree", "tasks"), [(1, 32), (2, 32), (4, 4), (7, 16), (10, 64)])
def test_prefix_split_covers_every_canonical_polynomial_once(degree: int, tasks: int) -> None:
    pre = lm.prefixes(degree, tasks)
    assert len(set(pre)) == len(pre)
    rows = [tuple(r) for p in pre for r in lm.coefficients(degree, p).tolist()]
    canonical = [c for c in all_polynomials(degree) if c[:2] == (1, 1)]
    assert Counter(rows) == Counter(canonical)
    assert len(rows) == 2 ** (degree - 1)


def test_prefix_count_is_in_the_scatter_range() -> None:
    assert len(lm.prefixes(16)) == 32
    assert 16 <= len(lm.prefixes(14, tasks=16)) <= 64
    assert len(lm.prefixes(2, tasks=64)) == 2  # capped by the number of coefficients


def test_symmetry_reproduces_every_polynomial() -> None:
    """The orbit {p, -p, p(-z), -p(-z)} of the canonical polynomials is all 2^(D+1)."""
    degree = 6
    sign = np.array([(-1) ** i for i in range(degree + 1)])
    seen: Counter[tuple[int, ...]] = Counter()
    for p in lm.prefixes(degree):
        for c in lm.coefficients(degree, p):
            for q in (c, -c, c * sign, -c * sign):
                seen[tuple(int(x) for x in q)] += 1
    assert seen == Counter(all_polynomials(degree))


@pytest.mark.parametrize("degree", [2, 3, 6])
def test_histogram_equals_brute_force(degree: int) -> None:
    size, extent = 37, 2.0
    want = lm.histogram(brute_force_roots(degree), size, extent)
    got = lm.total_histogram(degree, size, extent)
    # roots exactly on pixel edges (e.g. +-1, +-i) may land either side depending on rounding
    assert got.sum() == want.sum() == lm.n_roots(degree)
    assert np.abs(got - want).sum() <= 0.02 * want.sum()


@pytest.mark.parametrize("extent", [2.0, 1.6, 1.0])
def test_total_count_is_all_roots_minus_those_outside(extent: float) -> None:
    degree = 8
    roots = brute_force_roots(degree)
    outside = int(np.sum((np.abs(roots.real) >= extent) | (np.abs(roots.imag) >= extent)))
    h = lm.total_histogram(degree, 50, extent)
    assert h.sum() == lm.n_roots(degree) - outside
    if extent == 2.0:  # every Littlewood root has 1/2 < |z| < 2
        assert outside == 0


def test_histogram_orientation() -> None:
    h = lm.histogram([complex(1.5, 1.5), complex(-1.5, -1.5), 0j], 4, extent=2.0)
    assert h[0, 3] == 1  # top right: large real and imaginary parts
    assert h[3, 0] == 1  # bottom left
    assert h[2, 2] == 1  # the origin is the bottom-right pixel of the top-left quadrant
    assert h.sum() == 3
    assert lm.histogram([3 + 0j, -2.5j], 4, extent=2.0).sum() == 0


def test_sum_histograms_checks_shapes() -> None:
    a = np.ones((3, 3), dtype=np.int64)
    assert lm.sum_histograms([a, a, a]).sum() == 27
    with pytest.raises(ValueError):
        lm.sum_histograms([a, np.ones((2, 2))])
    with pytest.raises(ValueError):
        lm.sum_histograms([])


def test_colormap_and_shade() -> None:
    rgb = lm.colormap(np.array([0.0, 0.5, 1.0, 2.0]))
    assert rgb.shape == (4, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0]) == lm.INFERNO_ANCHORS[0][1]
    assert tuple(rgb[2]) == tuple(rgb[3]) == lm.INFERNO_ANCHORS[-1][1]
    s = lm.shade(np.array([[0, 1], [10, 1000]]))
    assert s[0, 0] == 0.0 and s.max() == 1.0
    assert np.all(lm.shade(np.zeros((2, 2))) == 0)


def test_png_has_the_right_size(tmp_path: Path) -> None:
    from PIL import Image

    out = lm.save_png(lm.total_histogram(6, 64), tmp_path / "sub" / "lw.png")
    assert out == (tmp_path / "sub" / "lw.png").absolute()
    with Image.open(out) as im:
        assert im.size == (64, 64) and im.mode == "RGB"
    assert [p.name for p in out.parent.iterdir()] == ["lw.png"]  # no temp file left behind


def test_sequential_script(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import sequential
    finally:
        sys.path.remove(str(EXAMPLE))
    out = tmp_path / "seq.png"
    assert sequential.main(["--degree", "8", "--size", "32", "--out", str(out), "--quiet"]) == 0
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (32, 32)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        lm.coefficients(3, (1, 0))
    with pytest.raises(ValueError):
        lm.coefficients(2, (1, 1, 1, 1))
    with pytest.raises(ValueError):
        lm.chunk_histogram(4, (1, -1), 10)
    with pytest.raises(ValueError):
        lm.prefix_length(0)
