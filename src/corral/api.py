"""The Python API: run a pipeline, or start it and control it; query runs in a store.

This is what the command line uses, and what a server with many users will use::

    import corral
    result = corral.run(littlewood, params={"degree": 14}, jobs=2)
    handle = corral.start(littlewood, params={"degree": 14})
    handle.pause(); handle.resume(); handle.wait()
    corral.Client(".").run(handle.run_id).tasks()
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from corral.codehash import recorded_parts
from corral.engine.engine import Engine, EngineOptions, Progress
from corral.engine.gc_pause import collection_paused
from corral.engine.plan import Plan, make_plan
from corral.engine.runlog import run_log
from corral.engine.states import TERMINAL_RUN_STATES, RunState
from corral.errors import CorralError, RunLockedError, TaskFailed, UsageError
from corral.executors import create_executor, executor_class
from corral.executors.base import ExecutorContext
from corral.graph import Future, MapFuture
from corral.hashing import hash_value
from corral.model import Pipeline
from corral.params import check_params
from corral.store import Store

log = logging.getLogger("corral")


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


@dataclass
class RunResult:
    run_id: str
    state: RunState
    errors: list[str]
    store: Store
    _result: Any = None
    _engine: Engine | None = None

    @property
    def ok(self) -> bool:
        return self.state is RunState.SUCCEEDED

    @property
    def value(self) -> Any:
        """The pipeline's return value with futures replaced by results (loaded lazily)."""
        if not self.ok:
            raise TaskFailed(self.errors[0].split(":")[0] if self.errors else "?",
                             "; ".join(self.errors[:3]) or self.state.value)
        return _resolve_result(self._result, self._engine)


def _resolve_result(value: Any, engine: Engine | None) -> Any:
    from corral.engine.values import substitute

    if engine is None:
        return None
    return substitute(value, engine.load_future)


def load_pipeline(source: str | Path, name: str | None = None) -> Pipeline[Any, Any]:
    """Import a pipeline file and return its pipeline (by name when it has several)."""
    path = Path(source).resolve()
    if not path.is_file():
        raise UsageError(f"pipeline file {str(source)!r} does not exist; check the path")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    pp = os.environ.get("PYTHONPATH", "")
    if folder not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = folder + (os.pathsep + pp if pp else "")
    mod_name = f"corral_pipeline_{path.stem}_{hash_value(str(path))[:8]}"
    module = sys.modules.get(mod_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        before = set(sys.modules)
        try:
            spec.loader.exec_module(module)
        except CorralError:
            raise
        except Exception as exc:
            del sys.modules[mod_name]
            raise UsageError(
                f"importing {path.name} failed: {type(exc).__name__}: {exc}; fix the file"
            ) from exc
        cloudpickle.register_pickle_by_value(module)
        _note_imports(set(sys.modules) - before)
    found = {p.name: p for p in vars(module).values() if isinstance(p, Pipeline)}
    for p in found.values():
        p.source_file = str(path)
    if name is not None:
        if name not in found:
            raise UsageError(
                f"{path.name} has no pipeline {name!r}; it defines: {', '.join(found) or 'none'}"
            )
        return found[name]
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise UsageError(f"{path.name} defines no @pipeline function; decorate one with @pipeline")
    raise UsageError(
        f"{path.name} defines several pipelines ({', '.join(found)}); name one after the file"
    )


PIPELINE_IMPORTS: set[str] = set()
"""Top-level packages that pipeline files imported; local workers import them ahead of time."""


def _note_imports(names: set[str]) -> None:
    """Remember installed third-party packages (numpy, pandas ...) the pipeline imported. The
    user's own modules are left out: workers must import their current source."""
    import sysconfig

    installed = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for name in names:
        top = name.partition(".")[0]
        if not top or top.startswith(("_", "corral")) or top in sys.stdlib_module_names:
            continue
        path = getattr(sys.modules.get(top), "__file__", None) or ""
        if path.startswith(installed):
            PIPELINE_IMPORTS.add(top)


def plan(pipeline: Pipeline[Any, Any], params: Mapping[str, Any] | None = None,
         workdir: str | Path | None = None) -> Plan:
    """Build and validate the graph and compute every cache key; nothing runs."""
    values = check_params(pipeline, dict(params or {}))
    return _build_plan(pipeline, values, Path(workdir or Path.cwd()).resolve())


def _build_plan(pipeline: Pipeline[Any, Any], values: dict[str, Any], workdir: Path) -> Plan:
    with collection_paused():  # an allocation burst without garbage cycles
        return make_plan(pipeline.build(values), workdir)


def _identity(source: str, pipeline: str, params: Mapping[str, Any]) -> str:
    return hash_value((source, pipeline, json.dumps(params, sort_keys=True, default=str)))


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def prepare_run(
    pipeline: Pipeline[Any, Any], params: Mapping[str, Any], cfg: RunConfig, store: Store
) -> tuple[str, Plan, dict[str, Any]]:
    """Validate everything and find or create the run row. Raises before anything runs."""
    values = check_params(pipeline, dict(params))
    workdir = cfg.workdir.resolve()
    the_plan = _build_plan(pipeline, values, workdir)
    graph = the_plan.graph
    source = cfg.source or pipeline.source_file or f"{pipeline.func.__module__}:{pipeline.name}"
    json_params = json.loads(json.dumps(values, default=str))
    identity = _identity(source, pipeline.name, json_params)
    previous = None if cfg.new else store.find_resumable(identity)
    if cfg.jobs is not None and (isinstance(cfg.jobs, bool) or not isinstance(cfg.jobs, int)
                                 or cfg.jobs < 1):
        raise UsageError(f"jobs={cfg.jobs!r} (-j/--jobs) must be a whole number >= 1; leave it "
                         f"out to run up to {os.cpu_count() or 2} tasks at once (the CPU count)")
    jobs = cfg.jobs or (os.cpu_count() or 2)
    executor = {"kind": cfg.executor, "options": cfg.executor_options, "jobs": jobs}
    if previous is not None:
        run_id = previous["id"]
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
    return run_id, the_plan, executor


def execute(pipeline: Pipeline[Any, Any], params: Mapping[str, Any], cfg: RunConfig,
            store: Store | None = None, engine_ready: Callable[[Engine], None] | None = None
            ) -> RunResult:
    """Run a pipeline to its end in this thread (see :func:`run`)."""
    _warm_up(cfg)
    store = store or Store.open(cfg.workdir, cfg.db)
    run_id, the_plan, executor_cfg = prepare_run(pipeline, params, cfg, store)
    note = store.claim_run(run_id)
    if note and cfg.on_note:
        cfg.on_note(note)
    workdir = cfg.workdir.resolve()
    work_root = workdir / ".corral" / "work" / run_id
    ctx = ExecutorContext(run_id, work_root, workdir, executor_cfg["jobs"], sys.executable)
    executor = create_executor(cfg.executor, cfg.executor_options, ctx)
    opts = EngineOptions(jobs=executor_cfg["jobs"], force=list(cfg.force),
                         no_cache=cfg.no_cache, fail_fast=cfg.fail_fast)
    engine = Engine(store, the_plan, run_id, executor, opts, work_root, cfg.on_progress)
    if engine_ready:
        engine_ready(engine)
    store.update_run(run_id, state=RunState.RUNNING.value, started_at=time.time(),
                     environment=_safe_env())
    state = RunState.INTERRUPTED
    try:
        with run_log(work_root):  # the libraries' chatter (dask) goes there, off the terminal
            try:
                executor.start(_Listener(engine))
                state = engine.run()
            finally:
                executor.shutdown()
    except BaseException:
        _best_effort(engine.rec.flush)  # keep what finished; the first error is the one raised
        raise
    finally:
        error = "; ".join(engine.errors[:5]) or None
        # if the store cannot take it (full disk), the next engine finds this one's lock stale
        _best_effort(lambda: store.release_run(run_id, state=state.value, error=error,
                                               finished_at=time.time(), control="none"))
    return RunResult(run_id, state, engine.errors, store, the_plan.graph.result, engine)


def _best_effort(action: Callable[[], None]) -> None:
    """Clean-up that must not hide the error being raised (a store that cannot be written)."""
    try:
        action()
    except CorralError as exc:
        log.debug("clean-up after an error failed too: %s", exc)


def _warm_up(cfg: RunConfig) -> None:
    try:
        cls = executor_class(cfg.executor)
    except CorralError:
        return  # reported with its fix when the executor is created
    cls.warm_up(cfg.executor_options)


def _safe_env() -> dict[str, Any] | None:
    try:
        from corral.report.environment import collect_environment

        return collect_environment()
    except Exception:
        return None


class _Listener:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def submitted(self, attempt_id: str, native_id: str) -> None:
        self.engine.rec.attempt(attempt_id, native_id=native_id)

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        self.engine.attempt_started(attempt_id, when, host)


def run(pipeline: Pipeline[Any, Any], params: Mapping[str, Any] | None = None,
        **config: Any) -> RunResult:
    """Run ``pipeline`` with ``params`` and wait for it. ``config`` fields: see RunConfig
    (``executor``, ``jobs``, ``workdir``, ``db``, ``force``, ``no_cache``, ``new`` ...)."""
    cfg = RunConfig(**config)
    cfg.workdir = Path(cfg.workdir)
    return execute(pipeline, params or {}, cfg)


class RunHandle:
    """A run in a store: query it, control it, wait for it."""

    def __init__(self, store: Store, run_id: str, thread: threading.Thread | None = None,
                 outcome: dict[str, Any] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        self._thread = thread
        self._outcome = outcome if outcome is not None else {}
        """Filled by the engine thread of :func:`start`: ``result`` or ``error``."""

    @property
    def info(self) -> dict[str, Any]:
        return self.store.get_run(self.run_id)

    @property
    def state(self) -> RunState:
        return RunState(self.info["state"])

    def tasks(self) -> list[dict[str, Any]]:
        return self.store.tasks(self.run_id)

    def attempts(self) -> list[dict[str, Any]]:
        return self.store.attempts(self.run_id)

    def task_result(self, name: str) -> Any:
        """The stored value of a finished task of this run."""
        row = self.store.find_task(self.run_id, name)
        from corral.engine.values import GatherRef

        value = cloudpickle.loads(self.store.load_value(row["key"]))
        if isinstance(value, GatherRef):
            return [cloudpickle.loads(self.store.load_value(k)) for k in value.keys]
        return value

    def pause(self) -> None:
        request_control(self.store, self.run_id, "pause")

    def resume(self) -> None:
        request_control(self.store, self.run_id, "none")

    def cancel(self) -> None:
        request_control(self.store, self.run_id, "cancel")

    def wait(self, timeout: float | None = None) -> RunState:
        if self._thread is not None:
            self._thread.join(timeout)
            error = self._outcome.get("error")
            if error is not None and not self._thread.is_alive():
                raise error
            return self.state
        deadline = None if timeout is None else time.time() + timeout
        while self.state not in TERMINAL_RUN_STATES and self.store.engine_alive(self.info):
            if deadline is not None and time.time() > deadline:
                break
            time.sleep(0.2)
        return self.state

    @property
    def result(self) -> RunResult | None:
        """The finished run's result, for runs started by :func:`start` in this process."""
        result: RunResult | None = self._outcome.get("result")
        return result


def request_control(store: Store, run_id: str, control: str) -> None:
    run_row = store.get_run(run_id)
    if RunState(run_row["state"]) in TERMINAL_RUN_STATES and control != "none":
        raise UsageError(f"run {run_row['id']} already ended ({run_row['state']})")
    store.update_run(run_row["id"], control=control)
    if control == "pause" and not store.engine_alive(run_row):
        store.update_run(run_row["id"], state=RunState.PAUSED.value)


def start(pipeline: Pipeline[Any, Any], params: Mapping[str, Any] | None = None,
          **config: Any) -> RunHandle:
    """Start ``pipeline`` in a background thread of this process; returns a handle at once."""
    cfg = RunConfig(**config)
    cfg.workdir = Path(cfg.workdir)
    store = Store.open(cfg.workdir, cfg.db)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def on_engine(engine: Engine) -> None:
        holder["run_id"] = engine.run_id
        ready.set()

    def target() -> None:
        try:
            holder["result"] = execute(pipeline, params or {}, cfg, store, on_engine)
        except BaseException as exc:
            holder["error"] = exc
            ready.set()

    thread = threading.Thread(target=target, name="corral-engine", daemon=True)
    thread.start()
    ready.wait()
    if "error" in holder and "run_id" not in holder:
        raise holder["error"]
    return RunHandle(store, holder["run_id"], thread, holder)


class Client:
    """Query runs of a store: ``Client(workdir).runs()``, ``Client(workdir).run(id)``."""

    def __init__(self, workdir: str | Path = ".", db: str | None = None) -> None:
        self.store = Store.open(Path(workdir), db)

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.store.list_runs(limit)

    def run(self, run_id: str) -> RunHandle:
        return RunHandle(self.store, self.store.get_run(run_id)["id"])


__all__ = ["Client", "RunConfig", "RunHandle", "RunLockedError", "RunResult", "RunState", "execute",
           "load_pipeline", "plan", "run", "start", "Future", "MapFuture"]
