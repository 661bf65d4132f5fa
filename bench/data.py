"""Data at scale (issue 18): Corral next to the plain operation, in the same run.

    python bench/data.py                                  # 500 MB output, 2 GB input, 1 GB array
    python bench/data.py --out-mb 50 --in-mb 200 --array-mb 100   # quicker

Each Corral case runs in a fresh process that calls ``corral.run`` and reports its wall time and
its own peak RSS (``RUSAGE_SELF``: the engine, not its pool workers) and the bytes under
``.corral``. Rows:

* a shell task writing an ``--out-mb`` output, next to ``head -c`` writing it;
* a fully cached re-run of a pipeline reading an ``--in-mb`` input, next to the same with a 1 KB
  input, and with ``CORRAL_REHASH=1`` (every input read again, as before the digest cache);
* a Python task returning an ``--array-mb`` numpy array to the next task, next to ``np.save`` and
  ``np.load`` of it; once as the engine builds payloads today (``load_future``: the engine loads
  the value to pickle it into the consumer's payload) and once with ``Engine.load_arg`` (the
  value passed by reference: a ``ResultRef`` to its CAS blob).

Everything is written under a temporary directory (on the file system of ``--dir``), removed at
the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

PIPES = textwrap.dedent('''
    from pathlib import Path
    from corral import pipeline, shell, task

    @pipeline
    def write_out(mb: int = 1):
        return shell("head -c {params[mb]}M /dev/zero > {output}", params={"mb": mb},
                     outputs="out.dat", name="write")

    @task
    def size(p: Path) -> int:
        return Path(p).stat().st_size

    @pipeline
    def read_in(name: str = "in.dat"):
        return size(Path(name))

    @task
    def produce(mb: int):
        import numpy as np
        return np.ones(mb * 2**20 // 8)

    @task
    def consume(a) -> float:
        return float(a[::4096].sum())

    @pipeline
    def array(mb: int = 1):
        return consume(produce(mb))
    ''')

DRIVER = textwrap.dedent('''
    import json, resource, sys, time
    from pathlib import Path
    import corral
    pipe_file, name, params, by_ref = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    if by_ref == "1":  # Engine._spec handing Engine.load_arg to the payload builder
        from corral.engine.specs import PayloadBuilder
        real = PayloadBuilder.payload
        PayloadBuilder.payload = lambda self, node, load: real(self, node, load.__self__.load_arg)
    pipe = corral.load_pipeline(pipe_file, name)
    t0 = time.perf_counter()
    r = corral.run(pipe, params, workdir=Path.cwd(), jobs=2)
    wall = time.perf_counter() - t0
    assert r.ok, r.errors
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"wall": wall, "rss": rss}))
    ''')


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def corral_case(root: Path, name: str, params: dict[str, object], by_ref: bool = False,
                env: dict[str, str] | None = None) -> dict[str, float]:
    before = tree_bytes(root / ".corral")
    out = subprocess.run(  # noqa: S603 - our own argv
        [sys.executable, "-c", DRIVER, str(root / "pipes.py"), name, json.dumps(params),
         "1" if by_ref else "0"],
        cwd=root, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    res["written"] = tree_bytes(root / ".corral") - before
    return res


def best_of(n: int, case: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The quickest of ``n`` runs (a shared machine is noisy)."""
    return min((case() for _ in range(n)), key=lambda r: r["wall"])


def plain(argv: list[str], cwd: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd)  # noqa: S603 - our own argv
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed")
    return {"wall": time.perf_counter() - t0, "rss": usage.ru_maxrss * 1024, "written": 0}


def fresh(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir()
    (d / "pipes.py").write_text(PIPES)
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-mb", type=int, default=500)
    ap.add_argument("--in-mb", type=int, default=2048)
    ap.add_argument("--array-mb", type=int, default=1024)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ns = ap.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-data-", dir=ns.dir) as tmp:
        base = Path(tmp)
        d = fresh(base, "out")
        rows.append((f"head -c {ns.out_mb}M > file",
                     plain(["bash", "-c", f"head -c {ns.out_mb}M /dev/zero > peer.dat"], d)))
        (d / "peer.dat").unlink()
        rows.append((f"corral: shell task writes {ns.out_mb} MB",
                     corral_case(d, "write_out", {"mb": ns.out_mb})))
        d = fresh(base, "in")
        (d / "small.dat").write_bytes(b"x" * 1024)
        with open(d / "in.dat", "wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(ns.in_mb):
                fh.write(block)
        corral_case(d, "read_in", {"name": "small.dat"})
        corral_case(d, "read_in", {"name": "in.dat"})
        rows.append(("corral: cached re-run, 1 KB input (best of 3)",
                     best_of(3, lambda: corral_case(d, "read_in", {"name": "small.dat"}))))
        rows.append((f"corral: cached re-run, {ns.in_mb} MB input (best of 3)",
                     best_of(3, lambda: corral_case(d, "read_in", {"name": "in.dat"}))))
        rows.append((f"corral: cached re-run, {ns.in_mb} MB input, CORRAL_REHASH=1",
                     corral_case(d, "read_in", {"name": "in.dat"}, env={"CORRAL_REHASH": "1"})))
        (d / "in.dat").unlink()
        d = fresh(base, "arr")
        peer = (f"import numpy as np; a = np.ones({ns.array_mb} * 2**20 // 8); "
                "np.save('peer.npy', a); del a; b = np.load('peer.npy'); print(b[::4096].sum())")
        rows.append((f"np.save + np.load, {ns.array_mb} MB",
                     plain([sys.executable, "-c", peer], d)))
        (d / "peer.npy").unlink()
        rows.append((f"corral: {ns.array_mb} MB array between tasks (load_future)",
                     corral_case(d, "array", {"mb": ns.array_mb})))
        d = fresh(base, "arr_ref")
        rows.append((f"corral: {ns.array_mb} MB array between tasks (load_arg)",
                     corral_case(d, "array", {"mb": ns.array_mb}, by_ref=True)))
    print("| case | wall (s) | peak RSS (MiB) | written under .corral (MiB) |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['wall']:.2f} | {r['rss'] / 2**20:.0f} | {r['written'] / 2**20:.1f} |")
    print("\npeak RSS: the process itself (plain rows: the command; corral rows: the engine)")


if __name__ == "__main__":
    main()
