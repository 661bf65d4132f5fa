"""Generate the example dataset: one noisy sine time series per item, as CSV + a units sidecar.

    python examples/datapipe/make_dataset.py OUTDIR [--items subj01,subj02] [--rows 200000] [--seed 0]

Each item ``<id>.csv`` has a header ``time,signal`` and ``<id>.units.json`` gives the units and
the sample rate. Item ``k`` oscillates at ``5 * (k + 1)`` Hz (plus a seeded random phase, drift
and noise), so the spectral estimate in the pipeline has something to find. A few MB per item.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

SAMPLE_RATE = 100.0  # Hz


def make_item(outdir: Path, item: str, index: int, rows: int, seed: int) -> Path:
    rng = np.random.default_rng([seed, index])
    t = np.arange(rows) / SAMPLE_RATE
    freq = 5.0 * (index + 1)
    signal = (np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
              + 0.3 * rng.standard_normal(rows) + rng.normal(0, 0.5))
    path = outdir / f"{item}.csv"
    np.savetxt(path, np.column_stack([t, signal]), fmt="%.6f", delimiter=",",
               header="time,signal", comments="")
    units = {"time": "s", "signal": "mV", "sample_rate_hz": SAMPLE_RATE, "seed": seed,
             "frequency_hz": freq}
    (outdir / f"{item}.units.json").write_text(json.dumps(units, indent=2) + "\n")
    return path


def write_sums(outdir: Path) -> Path:
    """``SHA256SUMS`` in the coreutils format (``<hex>  <name>``) over every file in outdir."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}"
             for p in sorted(outdir.iterdir()) if p.is_file() and p.name != "SHA256SUMS"]
    out = outdir / "SHA256SUMS"
    out.write_text("\n".join(lines) + "\n")
    return out


def make_dataset(outdir: str | Path, items: list[str], rows: int = 200_000, seed: int = 0,
                 only: list[str] | None = None) -> Path:
    """Write the items (or only those in ``only``) and refresh SHA256SUMS."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(items):
        if only is None or item in only:
            make_item(out, item, i, rows, seed)
    write_sums(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--items", default="subj01,subj02")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="regenerate only these items (comma-separated)")
    a = ap.parse_args()
    only = a.only.split(",") if a.only else None
    out = make_dataset(a.outdir, a.items.split(","), a.rows, a.seed, only)
    print(f"dataset in {out}")


if __name__ == "__main__":
    main()
