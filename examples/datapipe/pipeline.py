"""Download -> convert -> analyze (scatter over shards) -> gather -> visualize -> publish.

    python examples/datapipe/make_dataset.py served/
    python examples/datapipe/serve.py served/ --port 8765 &
    corral run examples/datapipe/pipeline.py -j 4

Paths are relative to the run's working directory (``--workdir``), where the engine and the
workers run. Raw downloads go to ``data_raw``; everything after ``convert`` reads only
``data_deriv``. See README.md and docs/tutorial.md.

Caching: the pipeline body reads ``{base_url}/SHA256SUMS`` while the graph is built and passes
each item's expected checksum to its ``download`` task. The checksum is therefore part of the
cache key: when one item changes on the server, only that item's branch (and the gather,
figure and page) runs again.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from corral import Resources, pipeline, task

CHUNK = 1 << 16
HIST_BINS = 40


# --------------------------------------------------------------------------- download

def fetch_manifest(base_url: str) -> dict[str, str]:
    """``{file name: sha256}`` from ``{base_url}/SHA256SUMS`` (coreutils format)."""
    with urllib.request.urlopen(f"{base_url.rstrip('/')}/SHA256SUMS", timeout=30) as r:
        text = r.read().decode()
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest.lower()
    return sums


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_file(url: str, dest: Path, sha256: str) -> Path:
    """Resumable download of ``url`` to ``dest``: continue ``dest.part`` with a Range request,
    verify the SHA-256, then rename atomically. A file already in place with the right
    checksum is kept."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and _sha256(dest) == sha256:
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url)
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: the part is already complete (or longer than the file)
            raise
        resp = None
    if resp is not None:
        with resp:
            mode = "ab" if have and resp.status == 206 else "wb"  # 200: server ignored Range
            with open(part, mode) as f:
                shutil.copyfileobj(resp, f, CHUNK)
    got = _sha256(part)
    if got != sha256:
        part.unlink()  # corrupt or stale: start from scratch on the retry
        raise ValueError(f"{url}: SHA-256 {got} does not match the manifest ({sha256})")
    part.replace(dest)
    return dest


@task(resources=Resources(cores=1, memory="1G", walltime="30m"), retries=2)
def download(base_url: str, item: str, sha256: dict[str, str], data_raw: str) -> dict[str, Any]:
    """Fetch ``<item>.csv`` and its ``<item>.units.json`` sidecar into ``data_raw``."""
    base = base_url.rstrip("/")
    raw = Path(data_raw)
    csv = fetch_file(f"{base}/{item}.csv", raw / f"{item}.csv", sha256["csv"])
    units = fetch_file(f"{base}/{item}.units.json", raw / f"{item}.units.json", sha256["units"])
    return {"item": item, "url": f"{base}/{item}.csv", "sha256": sha256["csv"],
            "csv": csv, "units": units}


# --------------------------------------------------------------------------- convert

@task(resources=Resources(cores=1, memory="2G", walltime="30m"))
def convert(raw: dict[str, Any], data_deriv: str) -> dict[str, Path]:
    """CSV -> ``<item>/data.h5`` (one dataset per column) + ``<item>/meta.yaml``."""
    import h5py
    import numpy as np
    import yaml

    item = raw["item"]
    with open(raw["csv"]) as f:
        columns = f.readline().strip().split(",")
    table = np.loadtxt(raw["csv"], delimiter=",", skiprows=1, ndmin=2)
    units_doc = json.loads(Path(raw["units"]).read_text())
    units = {c: units_doc.get(c, "") for c in columns}
    out = Path(data_deriv) / item
    out.mkdir(parents=True, exist_ok=True)
    h5, tmp = out / "data.h5", out / "data.h5.tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["item"] = item
        f.attrs["source_url"] = raw["url"]
        f.attrs["sha256"] = raw["sha256"]
        f.attrs["sample_rate_hz"] = float(units_doc["sample_rate_hz"])
        for i, c in enumerate(columns):
            d = f.create_dataset(c, data=table[:, i], compression="gzip")
            d.attrs["units"] = units[c]
    tmp.replace(h5)
    meta = {
        "item": item, "source_url": raw["url"], "sha256": raw["sha256"],
        "shape": list(table.shape), "columns": columns, "units": units,
        "sample_rate_hz": float(units_doc["sample_rate_hz"]),
        "extra": {k: v for k, v in units_doc.items() if k not in units and k != "sample_rate_hz"},
    }
    (out / "meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return {"h5": h5, "meta": out / "meta.yaml"}


# --------------------------------------------------------------------------- analyze

def shard_stats(signal: Any, rate: float, lo: float, hi: float) -> dict[str, Any]:
    """Sums for pooled moments, a histogram on [lo, hi] and the dominant frequency (FFT)."""
    import numpy as np

    x = np.asarray(signal, dtype=float)
    counts, edges = np.histogram(x, bins=HIST_BINS, range=(lo, hi))
    spectrum = np.abs(np.fft.rfft(x - x.mean())) ** 2
    freqs = np.fft.rfftfreq(x.size, d=1.0 / rate)
    return {
        "n": int(x.size), "sum": float(x.sum()), "sumsq": float(np.square(x).sum()),
        "mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
        "max": float(x.max()), "hist": counts.tolist(), "edges": edges.tolist(),
        "peak_hz": float(freqs[int(np.argmax(spectrum[1:])) + 1]) if x.size > 2 else 0.0,
    }


@task(resources=Resources(cores=1, memory="1G", walltime="15m"))
def analyze(converted: dict[str, Path], item: str, shard: int, shards: int,
            data_deriv: str) -> Path:
    """Statistics of slice ``shard`` of ``shards`` of the item's signal ->
    ``<item>/shards/<shard>.json``."""
    import h5py
    import numpy as np

    with h5py.File(converted["h5"], "r") as f:
        rate = float(f.attrs["sample_rate_hz"])
        signal = f["signal"]
        lo, hi = float(np.min(signal)), float(np.max(signal))  # common histogram range
        n = signal.shape[0]
        bounds = np.linspace(0, n, shards + 1).astype(int)
        part = signal[bounds[shard]:bounds[shard + 1]]
    stats = {"item": item, "shard": shard, "shards": shards,
             "rows": [int(bounds[shard]), int(bounds[shard + 1])],
             **shard_stats(part, rate, lo, hi)}
    out = Path(data_deriv) / item / "shards" / f"{shard}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stats, indent=1))
    return out


@task
def summarize(shard_files: list[Path], data_deriv: str) -> Path:
    """Gather: combine the shard statistics per item into one ``summary.json``."""
    import numpy as np

    per_item: dict[str, list[dict[str, Any]]] = {}
    for p in shard_files:
        s = json.loads(Path(p).read_text())
        per_item.setdefault(s["item"], []).append(s)
    summary: dict[str, Any] = {}
    for item, parts in per_item.items():
        parts.sort(key=lambda s: s["shard"])
        n = sum(s["n"] for s in parts)
        mean = sum(s["sum"] for s in parts) / n
        var = max(sum(s["sumsq"] for s in parts) / n - mean * mean, 0.0)
        summary[item] = {
            "n": n, "mean": mean, "std": var ** 0.5,
            "min": min(s["min"] for s in parts), "max": max(s["max"] for s in parts),
            "peak_hz": float(np.median([s["peak_hz"] for s in parts])),
            "hist": np.sum([s["hist"] for s in parts], axis=0).tolist(),
            "edges": parts[0]["edges"], "shards": [
                {k: s[k] for k in ("shard", "rows", "mean", "std", "peak_hz")} for s in parts],
        }
    out = Path(data_deriv) / "summary.json"
    out.write_text(json.dumps(summary, indent=1, sort_keys=True))
    return out


# --------------------------------------------------------------------------- visualize

@task(resources=Resources(cores=1, memory="1G"))
def visualize(summary: Path, data_deriv: str) -> Path:
    """One Plotly figure: the value histogram of every item, overlaid -> ``figure.html``."""
    import plotly.graph_objects as go

    data = json.loads(Path(summary).read_text())
    fig = go.Figure()
    for item, s in sorted(data.items()):
        centers = [(a + b) / 2 for a, b in zip(s["edges"][:-1], s["edges"][1:], strict=True)]
        fig.add_trace(go.Bar(x=centers, y=s["hist"], name=item, opacity=0.6,
                             hovertemplate=f"{item}: %{{y}} samples near %{{x:.2f}}<extra></extra>"))
    fig.update_layout(barmode="overlay", title="Signal value distribution per item",
                      xaxis_title="signal", yaxis_title="samples")
    out = Path(data_deriv) / "figure.html"
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    return out


# --------------------------------------------------------------------------- publish

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title></head>
<body>
<h1>{{ title }}</h1>
<p>{{ description }}</p>
<p>Data source: <a href="{{ source }}">{{ source }}</a> (verified against SHA256SUMS).</p>
<table border="1" cellpadding="4">
<tr><th>item</th><th>samples</th><th>mean</th><th>std</th><th>dominant frequency (Hz)</th></tr>
{% for item, s in summary|dictsort %}<tr><td>{{ item }}</td><td>{{ s.n }}</td>
<td>{{ "%.4f"|format(s.mean) }}</td><td>{{ "%.4f"|format(s.std) }}</td>
<td>{{ "%.2f"|format(s.peak_hz) }}</td></tr>
{% endfor %}</table>
<figure>
<iframe src="figure.html" width="100%" height="520" style="border:0"></iframe>
<figcaption>{{ caption }} <a href="figure.html">Open the figure</a>.</figcaption>
</figure>
</body></html>
"""


# ``remote:path`` as rclone reads it: a configured remote's name (letters, digits, ``_ . -`` and
# inner spaces; not starting with ``-``) or an on-the-fly backend (``:local:``, ``:s3,opt=v:``)
# before the first colon. A one-letter name is a Windows drive letter, and a ``/`` before the
# colon makes it local: write ``./name:x`` for a local directory with a colon in its name.
_REMOTE = re.compile(r"^(?:[\w.](?:[\w. -]*[\w.-])?|:[^:/\\]+):")
_LOG_STAMP = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ")  # rclone's log line prefix


def is_remote(dest: str) -> bool:
    """Whether ``dest`` names an rclone remote (``remote:path``) rather than a local directory."""
    m = _REMOTE.match(dest)
    return m is not None and len(m.group(0).strip(":")) > 1


def _stderr_tail(stderr: str) -> str:
    """The last meaningful line rclone logged, without its timestamp (or a placeholder)."""
    lines = [_LOG_STAMP.sub("", ln).strip() for ln in stderr.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("NOTICE: Config file")]
    return lines[-1][:400] if lines else "no message on stderr"


def rclone_copy(staging: Path, dest: str) -> str:
    """``rclone copy staging dest``; any failure is a one-line RuntimeError naming the remote."""
    rclone = shutil.which("rclone")
    if rclone is None:
        raise RuntimeError(f"publish: {dest!r} is an rclone remote but rclone is not installed")
    argv = [rclone, "copy", str(staging), dest]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    except OSError as exc:
        raise RuntimeError(f"publish: cannot run {rclone} to copy to {dest!r}: {exc}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"publish: rclone copy to {dest!r} failed (exit {proc.returncode}): "
                           f"{_stderr_tail(proc.stderr)}")
    return dest


def publish_to(staging: Path, dest: str) -> str:
    """Copy the staged site to a directory, or to an rclone remote (``remote:path``)."""
    if is_remote(dest):
        return rclone_copy(staging, dest)
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    for f in staging.iterdir():
        shutil.copy2(f, target / f.name)
    return str(target)


@task
def publish(figure: Path, summary: Path, base_url: str, items: list[str], dest: str,
            data_deriv: str) -> Path | str:
    """Render ``index.html`` with Jinja2 next to the figure and copy both to ``dest``."""
    import jinja2

    staging = Path(data_deriv) / "site"
    staging.mkdir(parents=True, exist_ok=True)
    page = jinja2.Environment(autoescape=True).from_string(PAGE).render(
        title="Corral datapipe: " + ", ".join(items),
        description=(f"{len(items)} time series downloaded, converted to HDF5, analysed in "
                     "shards and summarised by the Corral datapipe example."),
        source=base_url, summary=json.loads(Path(summary).read_text()),
        caption="Figure 1: distribution of the signal values of each item.",
    )
    (staging / "index.html").write_text(page)
    shutil.copy2(figure, staging / "figure.html")
    where = publish_to(staging, dest)
    if is_remote(dest):
        return where  # remote: nothing local to record
    return Path(where) / "index.html"


# --------------------------------------------------------------------------- pipeline

@pipeline
def datapipe(base_url: str = "http://127.0.0.1:8765", items: str = "subj01,subj02",
             shards: int = 4, dest: str = "site", data_raw: str = "data/raw",
             data_deriv: str = "data/deriv") -> Path | str:
    """Publish per-item statistics and a figure of the time series served at ``base_url``."""
    names = [i.strip() for i in items.split(",") if i.strip()]
    manifest = fetch_manifest(base_url)  # read while the graph is built: part of the keys
    missing = [f for n in names for f in (f"{n}.csv", f"{n}.units.json") if f not in manifest]
    if missing:
        raise ValueError(f"not in {base_url}/SHA256SUMS: {', '.join(missing)}")
    sums = [{"csv": manifest[f"{n}.csv"], "units": manifest[f"{n}.units.json"]} for n in names]
    raw = download.map(base_url=base_url, item=names, sha256=sums, data_raw=data_raw)
    converted = convert.map(raw=raw, data_deriv=data_deriv)
    shard_files: list[Path] = []
    for name, conv in zip(names, converted, strict=True):
        shard_files.extend(analyze.map(converted=conv, item=name, shard=range(shards),
                                       shards=shards, data_deriv=data_deriv))
    summary = summarize(shard_files, data_deriv)
    figure = visualize(summary, data_deriv)
    return publish(figure, summary, base_url, names, dest, data_deriv)
