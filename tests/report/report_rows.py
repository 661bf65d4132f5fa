"""Rows for report tests: a state store filled directly with realistic rows (runs, tasks,
attempts, edges, artifacts), so reports can be tested without the engine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from corral.store import Store
from corral.store import schema as t

G = 1024**3
M = 1024**2


def digest_of(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class RunBuilder:
    """Insert one run's rows. Task keys are derived from code, params, inputs and upstream keys,
    as the engine derives them, so equal inputs give equal keys across runs."""

    def __init__(
        self, store: Store, run_id: str, created_at: float, workdir: Path, **run: Any
    ) -> None:
        self.store, self.run_id, self.t0, self.workdir = store, run_id, created_at, workdir
        self.ids: dict[str, int] = {}
        self.keys: dict[str, str] = {}
        self._idx = 0
        row = {
            "id": run_id, "identity": "ident", "pipeline": "galaxy", "source": "pipe.py",
            "params": {"n": 4}, "workdir": str(workdir), "executor": {"name": "local"},
            "state": "succeeded", "control": "none", "owner": "me", "created_at": created_at,
            "started_at": created_at, "finished_at": created_at + 100,
            "environment": {"python": "3.11.9", "platform": "Linux-6.1-x86_64", "host": "node1",
                            "cpu_count": 8, "memory": 16 * G, "packages": {"numpy": "1.26.4"}},
        }
        row.update(run)
        store.create_run(row)

    def task(
        self,
        name: str,
        *,
        grp: str | None = None,
        state: str = "succeeded",
        cached: bool = False,
        code: str = "code-1",
        params: Any = None,
        inputs: dict[str, str] | None = None,
        upstream: list[str] | None = None,
        resources: dict[str, Any] | None = None,
        attempts: list[dict[str, Any]] | None = None,
        outputs: dict[str, str] | None = None,
        key: str | None = None,
        error: str | None = None,
    ) -> int:
        up = {u: self.keys[u] for u in upstream or []}
        key = key or digest_of([name, code, params, inputs, up])[:64]
        attempts = [] if cached else (attempts if attempts is not None else [{}])
        starts = [self.t0 + a.get("start", 0.0) for a in attempts]
        with self.store.transaction() as c:
            pk = c.execute(
                t.tasks.insert().values(
                    run_id=self.run_id, idx=self._idx, name=name, grp=grp or name, kind="python",
                    key=key, state="cached" if cached and state == "succeeded" else state,
                    cached=cached, attempts=len(attempts), code_hash=code, params=params,
                    inputs=inputs or {}, upstream=up, resources=resources or {"cores": 1},
                    error=error, started_at=min(starts) if starts else None,
                )
            ).inserted_primary_key
            assert pk is not None
            tid = pk[0]
            for number, a in enumerate(attempts, 1):
                self._attempt(c, tid, name, number, a, resources or {"cores": 1})
            if state == "succeeded":
                self._outputs(c, tid, name, key, len(attempts), outputs or {})
        self._idx += 1
        self.ids[name], self.keys[name] = tid, key
        for parent in upstream or []:
            self.edge(parent, name)
        return int(tid)

    def _attempt(
        self, c: Any, tid: int, name: str, number: int, a: dict[str, Any], res: dict[str, Any]
    ) -> None:
        start = self.t0 + a.get("start", 0.0)
        wall = a.get("wall", 10.0)
        workdir = self.workdir / "attempts" / f"{name}.{number}"
        workdir.mkdir(parents=True, exist_ok=True)
        for log in ("stdout", "stderr"):
            if f"{log}_text" in a:
                (workdir / f"{log}.log").write_text(a[f"{log}_text"])
        c.execute(
            t.attempts.insert().values(
                id=f"{self.run_id}-{name}-{number}", task_id=tid, run_id=self.run_id,
                number=number, state=a.get("state", "succeeded"),
                executor=a.get("executor", "local"), native_id=str(1000 + tid),
                host=a.get("host", "node1"), workdir=str(workdir),
                resources=a.get("resources", res), submitted_at=start - a.get("queued", 1.0),
                started_at=start, ended_at=start + wall, wall=wall,
                cpu_user=a.get("cpu", wall * 0.9) * 0.9, cpu_system=a.get("cpu", wall * 0.9) * 0.1,
                peak_rss=a.get("peak", 100 * M), read_bytes=1000, write_bytes=2000,
                exit_code=a.get("exit_code", 0), error=a.get("error"),
            )
        )

    def _outputs(
        self, c: Any, tid: int, name: str, key: str, n: int, outputs: dict[str, str]
    ) -> None:
        attempt = f"{self.run_id}-{name}-{n}" if n else None
        c.execute(
            t.artifacts.insert().values(
                digest=digest_of(key), path=None, kind="value", size=10, run_id=self.run_id,
                task_id=tid, attempt_id=attempt, task_key=key, created_at=self.t0 + 50,
            )
        )
        for path, digest in outputs.items():
            c.execute(
                t.artifacts.insert().values(
                    digest=digest, path=path, kind="file", size=1234, run_id=self.run_id,
                    task_id=tid, attempt_id=attempt, task_key=key, created_at=self.t0 + 50,
                )
            )

    def edge(self, parent: str, child: str) -> None:
        idx = {n: i for i, n in enumerate(self.ids)}
        with self.store.transaction() as c:
            c.execute(
                t.edges.insert().values(run_id=self.run_id, parent=idx[parent], child=idx[child])
            )


def build_galaxy(store: Store, workdir: Path, run_id: str = "run-a", t0: float = 1_700_000_000.0,
                 **changes: Any) -> RunBuilder:
    """A small pipeline: download (reused) -> prep -> roots[0..3] -> merge -> plot; plus a
    failed task ``flaky`` (out of memory, then a Python error).

    ``changes`` alter one task's fields, e.g. ``prep={"params": {"n": 5}}``."""
    raw = str(workdir / "data" / "raw.csv")
    b = RunBuilder(store, run_id, t0, workdir)

    def opts(name: str, **kw: Any) -> dict[str, Any]:
        kw.update(changes.get(name, {}))
        return kw

    b.task("download", **opts("download", cached=True, params={"url": "http://x/raw.csv"}))
    b.task("prep", **opts("prep", params={"n": 4, "scale": 1.0}, inputs={raw: "d-raw-1"},
                          upstream=["download"], attempts=[{"start": 0, "wall": 20, "cpu": 19}],
                          outputs={str(workdir / "out" / "prep.h5"): "d-prep"}))
    roots_res = {"cores": 4, "memory": 8 * G, "walltime": 4 * 3600}
    for i in range(4):
        b.task(f"roots[{i}]", **opts("roots", grp="roots", params={"i": i}, upstream=["prep"],
                                     resources=roots_res,
                                     attempts=[{"start": 20 + i, "wall": 30 + 10 * i,
                                                "cpu": (30 + 10 * i) * 1.1, "peak": int(0.6 * G),
                                                "host": f"node{1 + i % 2}", "queued": 2.0}]))
    b.task("merge", **opts("merge", upstream=[f"roots[{i}]" for i in range(4)],
                           attempts=[{"start": 70, "wall": 15, "cpu": 14, "peak": 300 * M}],
                           outputs={str(workdir / "out" / "merged.csv"): "d-merged"}))
    b.task("plot", **opts("plot", params={"style": "dark"}, upstream=["merge"],
                          attempts=[{"start": 85, "wall": 5, "cpu": 4}],
                          outputs={str(workdir / "out" / "plot.png"): "d-plot"}))
    b.task("flaky", **opts("flaky", state="failed", upstream=["prep"],
                           resources={"cores": 1, "memory": 2 * G},
                           error="ValueError: bad value",
                           attempts=[{"start": 20, "wall": 3, "state": "out_of_memory",
                                      "exit_code": 137},
                                     {"start": 25, "wall": 2, "state": "failed", "exit_code": 1,
                                      "error": "Traceback (most recent call last):\n"
                                               "  File \"pipe.py\", line 3, in flaky\n"
                                               "ValueError: bad value",
                                      "stderr_text": "warning: starting\nValueError: bad value\n",
                                      "stdout_text": "step 1\nstep 2\n"}]))
    return b


def build_large(store: Store, n_tasks: int = 10_000, run_id: str = "big",
                t0: float = 1_700_000_000.0, hosts: int = 40) -> None:
    """A synthetic run of ``n_tasks`` tasks inserted in bulk: prep -> sim[0..n-4] (a map, 1 %
    failed after a retry) -> summarize -> plot, on ``hosts`` SLURM nodes, 10 slots each."""
    import random

    rng = random.Random(1)
    n_sim = n_tasks - 3
    store.create_run({
        "id": run_id, "identity": "big", "pipeline": "sweep", "source": "sweep.py",
        "params": {"n": n_sim}, "workdir": "/tmp", "executor": {"name": "slurm"},
        "state": "failed", "control": "none", "owner": "me", "created_at": t0,
        "started_at": t0, "finished_at": t0 + 7200,
    })
    tasks, attempts, edges = [], [], []
    base = 1_000_000 + sum(map(ord, run_id)) * 100_000
    slot_free = [t0 + 60.0] * (hosts * 10)

    def add(idx: int, name: str, grp: str, n_att: int, start: float, wall: float,
            failed: bool) -> float:
        tasks.append({"id": base + idx, "run_id": run_id, "idx": idx, "name": name, "grp": grp,
                      "kind": "python", "key": f"k{idx}", "state": "failed" if failed else
                      "succeeded", "cached": False, "attempts": n_att, "code_hash": "c",
                      "params": {"i": idx}, "inputs": {}, "upstream": {},
                      "resources": {"cores": 2, "memory": 4 * G, "walltime": 3600}})
        end = start
        for k in range(1, n_att + 1):
            slot = min(range(len(slot_free)), key=slot_free.__getitem__) if grp == "sim" else 0
            begin = max(end, slot_free[slot]) + rng.uniform(1, 30)
            end = begin + wall * rng.uniform(0.6, 1.4)
            if grp == "sim":
                slot_free[slot] = end
            bad = failed or k < n_att
            attempts.append({
                "id": f"{run_id}-{idx}-{k}", "task_id": base + idx, "run_id": run_id, "number": k,
                "state": "failed" if bad else "succeeded", "executor": "slurm",
                "native_id": str(idx * 10 + k), "host": f"c{slot // 10:03d}",
                "submitted_at": begin - 20, "started_at": begin, "ended_at": end,
                "wall": end - begin, "cpu_user": (end - begin) * 1.0, "cpu_system": 1.0,
                "peak_rss": int(rng.uniform(0.4, 0.9) * G), "exit_code": 1 if bad else 0,
                "error": "Traceback ...\nRuntimeError: diverged" if bad else None,
                "workdir": f"/nonexistent/{run_id}/{idx}.{k}",
            })
        return end

    prep_end = add(0, "prep", "prep", 1, t0, 60, False)
    slot_free[:] = [prep_end] * len(slot_free)
    for i in range(n_sim):
        fail = i % 100 == 7
        add(i + 1, f"sim[{i}]", "sim", 2 if fail or i % 50 == 3 else 1, prep_end, 240, fail)
        edges.append({"run_id": run_id, "parent": 0, "child": i + 1})
    last = max(slot_free)
    add(n_sim + 1, "summarize", "summarize", 1, last, 120, False)
    add(n_sim + 2, "plot", "plot", 1, last + 200, 30, False)
    edges += [{"run_id": run_id, "parent": i + 1, "child": n_sim + 1} for i in range(n_sim)]
    edges.append({"run_id": run_id, "parent": n_sim + 1, "child": n_sim + 2})
    with store.transaction() as c:
        c.execute(t.tasks.insert(), tasks)
        c.execute(t.attempts.insert(), attempts)
        c.execute(t.edges.insert(), edges)
