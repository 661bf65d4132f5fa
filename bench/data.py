"""Data at scale (issue 18): Corral next to the plain operation, in the same run.

    python bench/data.py                                  # 500 MB output, 2 GB input, 1 GB array
    python bench/data.py --out-mb 50 --in-mb 200 --array-mb 100   # quicker
    python bench/data.py --only-transfer --transfer-mb 200        # transfer rows (staged ssh)

Each Corral case runs in a fresh process that calls ``corral.run`` and reports its wall time and
its own peak RSS (``VmHWM``: the engine, not its pool workers) and the bytes under
``.corral``. Rows:

* a shell task writing an ``--out-mb`` output, next to ``head -c`` writing it;
* a fully cached re-run of a pipeline reading an ``--in-mb`` input, next to the same with a 1 KB
  input, and with ``CORRAL_REHASH=1`` (every input read again, as before the digest cache);
* a Python task returning an ``--array-mb`` numpy array to the next task (which sums every
  4096th element), next to ``np.save`` and ``np.load`` of it (and the same with ``os.fsync``
  before the load, and with ``np.load(mmap_mode="r")``): on the local executor, and with
  ``--slurm`` on the real SLURM of the test rig, with ``--ssh`` over ssh to the rig's sshd on
  127.0.0.1 with ``shared_filesystem = true`` (``CORRAL_TEST_SSH_*`` variables of
  ``/run/corral-rig/env``): the value goes through the shared file system; with
  ``--ssh-staged`` the same without a shared file system (the value is fetched back into the
  store and kept in the host's content cache, the consumer maps it there). Each of these runs
  ``--repeat`` times, alternating, after an ``os.sync()``; the median is shown.

With ``--transfer-mb``, the transfer rows: ``--transfer-tasks`` tasks reading one input file
over ssh to the rig's sshd *without* a shared file system (staged; a fresh remote work
directory), run twice (the second time with new parameters, so the tasks run again while the
content is in the host's cache), next to one ``scp`` of the file: what reached the remote side
is the growth of its content cache (``.corral-cache``).

Everything is written under a temporary directory (on the file system of ``--dir``), removed at
the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
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

    @task
    def nbytes(p: Path, i: int, salt: int) -> int:
        return Path(p).stat().st_size + i + salt

    @pipeline
    def fan_in(n: int = 5, salt: int = 0):
        return [nbytes(Path("in.dat"), i, salt) for i in range(n)]
    ''')

DRIVER = textwrap.dedent('''
    import json, sys, time
    from pathlib import Path
    import corral
    pipe_file, name, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    executor, options = sys.argv[4], json.loads(sys.argv[5])
    pipe = corral.load_pipeline(pipe_file, name)
    t0 = time.perf_counter()
    r = corral.run(pipe, params, workdir=Path.cwd(), jobs=2, executor=executor,
                   executor_options=options)
    wall = time.perf_counter() - t0
    assert r.ok, r.errors
    status = open("/proc/self/status").read()  # VmHWM: this image's peak (ru_maxrss would count
    rss = int(status.split("VmHWM:")[1].split()[0]) * 1024  # the parent it was forked from too)
    print(json.dumps({"wall": wall, "rss": rss}))
    ''')

SLURM_OPTIONS: dict[str, object] = {"poll_interval": 0.3, "max_poll_interval": 1.0, "marker_interval": 0.2}


def executor_options(executor: str) -> dict[str, object]:
    if executor == "slurm":
        return SLURM_OPTIONS
    if executor == "ssh":
        env = os.environ
        return {"hosts": [f"ssh://{env['CORRAL_TEST_SSH_USER']}@127.0.0.1:"
                          f"{env['CORRAL_TEST_SSH_PORT']}"],
                "python": sys.executable, "shared_filesystem": True, "poll_interval": 0.3,
                "identity_file": env["CORRAL_TEST_SSH_KEY"],
                "known_hosts": env.get("CORRAL_TEST_SSH_KNOWN_HOSTS") or None}
    return {}


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def corral_case(root: Path, name: str, params: dict[str, object], executor: str = "local",
                env: dict[str, str] | None = None, options: dict[str, object] | None = None
                ) -> dict[str, float]:
    before = tree_bytes(root / ".corral")
    if executor == "ssh-staged":  # no shared file system: staged under root/remote
        executor, options = "ssh", {"shared_filesystem": False, "remote_workdir": str(root / "remote"),
                                    **(options or {})}
    options = {**executor_options(executor), **(options or {})}
    out = subprocess.run(  # noqa: S603 - our own argv
        [sys.executable, "-c", DRIVER, str(root / "pipes.py"), name, json.dumps(params),
         executor, json.dumps(options)],
        cwd=root, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})})
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    res["written"] = tree_bytes(root / ".corral") - before
    return res


def best_of(n: int, case: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The quickest of ``n`` runs (a shared machine is noisy)."""
    return min((case() for _ in range(n)), key=lambda r: r["wall"])


def plain(argv: list[str], cwd: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL)  # noqa: S603 - our own argv
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed")
    return {"wall": time.perf_counter() - t0, "rss": usage.ru_maxrss * 1024, "written": 0}


def fresh(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir()
    (d / "pipes.py").write_text(PIPES)
    return d


PEERS = {
    "np.save + np.load": "b = np.load('peer.npy')",
    "np.save + fsync + np.load": ("fd = os.open('peer.npy', os.O_RDONLY); os.fsync(fd); "
                                  "os.close(fd); b = np.load('peer.npy')"),
    "np.save + np.load(mmap_mode='r')": "b = np.load('peer.npy', mmap_mode='r')",
}


def array_rows(base: Path, mb: int, repeat: int, executors: list[str]
               ) -> list[tuple[str, dict[str, float]]]:
    """The array round trip and its plain peers, ``repeat`` times alternating, medians."""
    d = fresh(base, "arr")
    cases: dict[str, Callable[[], dict[str, float]]] = {}
    for label, load in PEERS.items():
        code = (f"import os, numpy as np; a = np.ones({mb} * 2**20 // 8); np.save('peer.npy', a); "
                f"del a; {load}; print(b[::4096].sum())")
        cases[f"{label}, {mb} MB"] = functools.partial(plain, [sys.executable, "-c", code], d)
    for executor in executors:
        cases[f"corral: {mb} MB array between tasks ({executor})"] = functools.partial(
            lambda ex: corral_case(fresh(base, f"arr{time.monotonic_ns()}"), "array",
                                   {"mb": mb}, executor=ex), executor)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            os.sync()  # the dirty pages of the case before are not this one's to write
            runs[name].append(case())
            (d / "peer.npy").unlink(missing_ok=True)
            for old in base.glob("arr[0-9]*"):
                shutil.rmtree(old)
    return [(f"{name} (median of {repeat})", median_run(r)) for name, r in runs.items()]


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]


def transfer_rows(base: Path, mb: int, tasks: int) -> list[tuple[str, dict[str, float]]]:
    """``tasks`` tasks reading one ``mb`` MB input over staged ssh to the rig's sshd (a fresh
    remote work directory), then again (new parameters: the tasks run again, the content is in
    the host's cache), next to one ``scp`` of the file. ``written`` is what reached the remote
    side: the growth of its content cache (for scp: the file)."""
    env = os.environ
    d = fresh(base, "xfer")
    with open(d / "in.dat", "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(mb):
            fh.write(block)
    remote = base / "xfer-remote"
    remote.mkdir()
    known = env.get("CORRAL_TEST_SSH_KNOWN_HOSTS")
    scp = ["scp", "-q", "-P", env["CORRAL_TEST_SSH_PORT"], "-i", env["CORRAL_TEST_SSH_KEY"],
           "-o", f"UserKnownHostsFile={known}" if known else "StrictHostKeyChecking=no",
           "-o", "BatchMode=yes", str(d / "in.dat"),
           f"{env['CORRAL_TEST_SSH_USER']}@127.0.0.1:{remote / 'peer.dat'}"]
    os.sync()
    peer = plain(scp, d)
    peer["written"] = (remote / "peer.dat").stat().st_size
    (remote / "peer.dat").unlink()
    options: dict[str, object] = {"shared_filesystem": False, "remote_workdir": str(remote)}
    rows = [(f"scp of the {mb} MB file, once", peer)]
    for salt, what in ((0, "first run"), (1, "re-run, tasks run again")):
        cache = remote / ".corral-cache"
        before = tree_bytes(cache)
        os.sync()
        res = corral_case(d, "fan_in", {"n": tasks, "salt": salt}, executor="ssh", options=options)
        res["written"] = tree_bytes(cache) - before
        rows.append((f"corral: {tasks} tasks read the {mb} MB file, staged ssh, {what}", res))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-mb", type=int, default=500)
    ap.add_argument("--in-mb", type=int, default=2048)
    ap.add_argument("--array-mb", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each array case")
    ap.add_argument("--slurm", action="store_true", help="the array round trip on SLURM too")
    ap.add_argument("--ssh", action="store_true", help="and over ssh to the rig's sshd")
    ap.add_argument("--ssh-staged", action="store_true",
                    help="and over ssh to the rig's sshd without a shared file system")
    ap.add_argument("--only-arrays", action="store_true", help="skip the file cases")
    ap.add_argument("--transfer-mb", type=int, default=0,
                    help="the transfer rows: a file of this size over staged ssh to the rig's sshd")
    ap.add_argument("--transfer-tasks", type=int, default=5)
    ap.add_argument("--only-transfer", action="store_true", help="only the transfer rows")
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ns = ap.parse_args()
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-data-", dir=ns.dir) as tmp:
        base = Path(tmp)
        if not ns.only_arrays and not ns.only_transfer:
            rows += file_rows(base, ns.out_mb, ns.in_mb)
        executors = ["local"] + ["slurm"] * ns.slurm + ["ssh"] * ns.ssh + ["ssh-staged"] * ns.ssh_staged
        if not ns.only_transfer:
            rows += array_rows(base, ns.array_mb, ns.repeat, executors)
        if ns.transfer_mb:
            rows += transfer_rows(base, ns.transfer_mb, ns.transfer_tasks)
    print("| case | wall (s) | peak RSS (MiB) | written under .corral (MiB) |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {r['wall']:.2f} | {r['rss'] / 2**20:.0f} | {r['written'] / 2**20:.1f} |")
    print("\npeak RSS: the process itself (plain rows: the command; corral rows: the engine)")
    if ns.transfer_mb:
        print("transfer rows: the last column is what reached the remote side (MiB): the growth of "
              "its content cache, for scp the file")


def file_rows(base: Path, out_mb: int, in_mb: int) -> list[tuple[str, dict[str, float]]]:
    """A large output, and the cached re-run of a large input, with their plain peers."""
    rows: list[tuple[str, dict[str, float]]] = []
    d = fresh(base, "out")
    rows.append((f"head -c {out_mb}M > file",
                 plain(["bash", "-c", f"head -c {out_mb}M /dev/zero > peer.dat"], d)))
    (d / "peer.dat").unlink()
    rows.append((f"corral: shell task writes {out_mb} MB",
                 corral_case(d, "write_out", {"mb": out_mb})))
    d = fresh(base, "in")
    (d / "small.dat").write_bytes(b"x" * 1024)
    with open(d / "in.dat", "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(in_mb):
            fh.write(block)
    corral_case(d, "read_in", {"name": "small.dat"})
    corral_case(d, "read_in", {"name": "in.dat"})
    rows.append(("corral: cached re-run, 1 KB input (best of 3)",
                 best_of(3, lambda: corral_case(d, "read_in", {"name": "small.dat"}))))
    rows.append((f"corral: cached re-run, {in_mb} MB input (best of 3)",
                 best_of(3, lambda: corral_case(d, "read_in", {"name": "in.dat"}))))
    rows.append((f"corral: cached re-run, {in_mb} MB input, CORRAL_REHASH=1",
                 corral_case(d, "read_in", {"name": "in.dat"}, env={"CORRAL_REHASH": "1"})))
    (d / "in.dat").unlink()
    return rows


if __name__ == "__main__":
    main()
