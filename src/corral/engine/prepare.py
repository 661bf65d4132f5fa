"""Preparing a run, before anything runs: its configuration, its plan (graph and keys), its
identity and run id (a new run, or the unfinished one it resumes), where its attempts live and
the executor that serves it. Used by attached runs (:mod:`.lifecycle`) and detached ones alike.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from corral.codehash import recorded_parts
from corral.errors import UsageError
from corral.executors import create_executor
from corral.executors.base import Executor, ExecutorContext
from corral.hashing import hash_value
from corral.model import Pipeline
from corral.params import check_params
from corral.states import RunState
from corral.store import Store

from .gc_pause import collection_paused
from .plan import Plan, make_plan
from .progress import Progress


@dataclass
class RunConfig:
    """How to run: executor and options, parallelism, where state lives, cache policy."""

    executor: str = "local"
    executor_options: dict[str, Any] = field(default_factory=dict)
    jobs: int | None = None
    workdir: Path = field(default_factory=Path.cwd)
    db: str | None = None
    force: Sequence[str] = ()
    no_cache: bool = False
    fail_fast: bool = False
    new: bool = False
    """Start a new run even if an unfinished run of the same pipeline could be resumed."""
    source: str | None = None
    """Where the pipeline came from (file path), for the run record and resuming."""
    owner: str = ""
    project: str | None = None
    on_progress: Callable[[Progress], None] | None = None
    on_note: Callable[[str], None] | None = None


class PreparedRun(NamedTuple):
    run_id: str
    plan: Plan
    jobs: int
    """The ``-j`` limit the run records and the engine applies (0: none, a cluster executor's
    own limits govern)."""


def work_root(workdir: Path, run_id: str) -> Path:
    """The directory of a run's attempts: ``<workdir>/.corral/work/<run id>``."""
    return workdir / ".corral" / "work" / run_id


def executor_context(run_id: str, workdir: Path, jobs: int,
                     preload: Collection[str] = ()) -> ExecutorContext:
    """What an executor serving run ``run_id`` is told."""
    return ExecutorContext(run_id, work_root(workdir, run_id), workdir, jobs, sys.executable,
                           tuple(sorted(preload)))


def recorded_executor(run: Mapping[str, Any], kind: str | None = None) -> Executor:
    """The executor of a recorded run (its kind and options as the run row keeps them), to
    query, cancel or reconcile its jobs after the engine that submitted them is gone."""
    recorded = run.get("executor") or {}
    kind = kind or str(recorded.get("kind") or "local")
    ctx = executor_context(str(run["id"]), Path(run["workdir"]), int(recorded.get("jobs") or 0))
    return create_executor(kind, recorded.get("options") or {}, ctx)


def build_plan(pipeline: Pipeline[Any, Any], params: Mapping[str, Any], workdir: Path) -> Plan:
    """Check the parameters, build and validate the graph, compute every cache key."""
    values = check_params(pipeline, dict(params))
    with collection_paused():  # an allocation burst without garbage cycles
        return make_plan(pipeline.build(values), workdir)


def _identity(source: str, pipeline: str, params: Mapping[str, Any]) -> str:
    return hash_value((source, pipeline, json.dumps(params, sort_keys=True, default=str)))


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


CLUSTER_KINDS = frozenset({"slurm", "sge", "pbs", "lsf", "ssh", "dask", "tes"})
"""Executors whose tasks run on other machines: without ``-j`` the engine sets them no limit
(their own ``max_jobs``, array throttle or worker count govern), not the local CPU count."""


def default_jobs(kind: str) -> int:
    """The ``-j`` of a run that gave none: the CPU count on this machine, 0 (no limit set by the
    engine) for a cluster executor."""
    return 0 if kind in CLUSTER_KINDS else (os.cpu_count() or 2)


def check_jobs(jobs: object, kind: str) -> int:
    """How many attempts the engine hands out at once for ``-j jobs`` on an executor of
    ``kind`` (its default when ``jobs`` is None); a one-line :class:`UsageError` if bad."""
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise UsageError(f"jobs={jobs!r} (-j/--jobs) must be a whole number >= 1; leave it "
                         f"out to run up to {os.cpu_count() or 2} tasks at once (the CPU count; "
                         "no limit on a cluster executor)")
    return jobs or default_jobs(kind)


def prepare_run(pipeline: Pipeline[Any, Any], params: Mapping[str, Any], cfg: RunConfig,
                store: Store) -> PreparedRun:
    """Validate everything and find (to resume) or create the run row. Raises before anything
    runs."""
    workdir = cfg.workdir.resolve()
    the_plan = build_plan(pipeline, params, workdir)
    graph = the_plan.graph
    source = cfg.source or pipeline.source_file or f"{pipeline.func.__module__}:{pipeline.name}"
    json_params = json.loads(json.dumps(check_params(pipeline, dict(params)), default=str))
    identity = _identity(source, pipeline.name, json_params)
    previous = None if cfg.new else store.find_resumable(identity)
    jobs = check_jobs(cfg.jobs, cfg.executor)
    executor = {"kind": cfg.executor, "options": cfg.executor_options, "jobs": jobs}
    if previous is not None:
        run_id = str(previous["id"])
        if cfg.on_note:
            cfg.on_note(f"resuming run {run_id} ({previous['state']})")
        store.update_run(run_id, executor=executor, control="none", error=None)
    else:
        run_id = _new_run_id()
        store.create_run({
            "id": run_id, "identity": identity, "pipeline": pipeline.name, "source": source,
            "params": json_params, "workdir": str(workdir), "executor": executor,
            "state": RunState.PENDING.value, "control": "none", "owner": cfg.owner,
            "project": cfg.project, "created_at": time.time(), "n_tasks": len(graph.nodes),
            "options": {"force": list(cfg.force), "no_cache": cfg.no_cache,
                        "code_parts": recorded_parts(graph.nodes)},  # for `corral why`
        })
    return PreparedRun(run_id, the_plan, jobs)




def recorded_run(run: Mapping[str, Any], db: str | None = None, jobs: int | None = None,
                 on_note: Callable[[str], None] | None = None
                 ) -> tuple[Pipeline[Any, Any], dict[str, Any], RunConfig]:
    """What running a recorded run again takes (``corral resume`` of a run whose engine is
    gone): its pipeline, loaded again from its file, its parameters and its configuration."""
    from corral.loading import load_pipeline

    source = str(run["source"] or "")
    pipe = load_pipeline(source, str(run["pipeline"]))
    recorded = run.get("executor") or {}
    cfg = RunConfig(executor=str(recorded.get("kind") or "local"),
                    executor_options=dict(recorded.get("options") or {}),
                    jobs=jobs or recorded.get("jobs"), workdir=Path(run["workdir"]), db=db,
                    source=source, on_note=on_note)
    return pipe, dict(run.get("params") or {}), cfg
