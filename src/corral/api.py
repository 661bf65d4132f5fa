"""The Python API: run a pipeline, or start it and control it; query runs in a store.

This is what the command line uses, and what a server with many users will use::

    import corral
    result = corral.run(littlewood, params={"degree": 14}, jobs=2)
    handle = corral.start(littlewood, params={"degree": 14})
    handle.pause(); handle.resume(); handle.wait()
    corral.runs("."); corral.attach("latest").refresh()

The rules of a run's life live in :mod:`corral.engine.lifecycle`; this module is the typed
surface over them that the command line and the gateway use.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from corral.engine.engine import Engine
from corral.engine.lifecycle import Cancelled, RunResult, cancel_run, execute, reconcile, request_control
from corral.engine.plan import Plan
from corral.engine.prepare import RunConfig, build_plan
from corral.engine.progress import Progress
from corral.errors import RunLockedError
from corral.graph import Future, MapFuture
from corral.loading import load_pipeline
from corral.model import Pipeline
from corral.states import TERMINAL_RUN_STATES, RunState
from corral.store import Store
from corral.store.rows import AttemptRow, RunRow, TaskRow


def plan(pipeline: Pipeline[Any, Any], params: Mapping[str, Any] | None = None,
         workdir: str | Path | None = None) -> Plan:
    """Build and validate the graph and compute every cache key; nothing runs."""
    return build_plan(pipeline, params or {}, Path(workdir or Path.cwd()).resolve())


def _config(workdir: str | Path, executor_options: Mapping[str, Any] | None,
            **fields: Any) -> RunConfig:
    return RunConfig(workdir=Path(workdir), executor_options=dict(executor_options or {}),
                     **fields)


def run(pipeline: Pipeline[Any, Any], params: Mapping[str, Any] | None = None, *,
        executor: str = "local", executor_options: Mapping[str, Any] | None = None,
        jobs: int | None = None, workdir: str | Path = ".", db: str | None = None,
        force: Sequence[str] = (), no_cache: bool = False, fail_fast: bool = False,
        new: bool = False, source: str | None = None, owner: str = "",
        project: str | None = None, on_progress: Callable[[Progress], None] | None = None,
        on_note: Callable[[str], None] | None = None) -> RunResult:
    """Run ``pipeline`` with ``params`` and wait for it (see :class:`RunConfig` for the
    options). An unfinished run of the same pipeline, file and parameters is resumed unless
    ``new``."""
    cfg = _config(workdir, executor_options, executor=executor, jobs=jobs, db=db, force=force,
                  no_cache=no_cache, fail_fast=fail_fast, new=new, source=source, owner=owner,
                  project=project, on_progress=on_progress, on_note=on_note)
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
    def info(self) -> RunRow:
        return self.store.get_run(self.run_id)

    @property
    def state(self) -> RunState:
        return RunState(self.info["state"])

    def tasks(self) -> list[TaskRow]:
        return self.store.tasks(self.run_id)

    def attempts(self) -> list[AttemptRow]:
        return self.store.attempts(self.run_id)

    def task_result(self, name: str) -> Any:
        """The stored value of a finished task of this run."""
        row = self.store.find_task(self.run_id, name)
        from corral.engine.values import GatherRef

        value = cloudpickle.loads(self.store.load_value(row["key"]))
        if isinstance(value, GatherRef):
            return [cloudpickle.loads(self.store.load_value(k)) for k in value.keys]
        return value

    def refresh(self) -> RunState:
        """Bring the run's record up to date and return its state: a run whose engine died is
        *interrupted*; a detached run's cluster jobs are reconciled from their exit markers."""
        return RunState(reconcile(self.store, self.run_id)["state"])

    def pause(self) -> None:
        request_control(self.store, self.run_id, "pause")

    def resume(self) -> None:
        request_control(self.store, self.run_id, "none")

    def cancel(self) -> Cancelled:
        """Cancel the run: its live engine is asked to; without one, its recorded cluster jobs
        (orphans of a dead engine, or a detached run's) are cancelled here."""
        return cancel_run(self.store, self.run_id)

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


def start(pipeline: Pipeline[Any, Any], params: Mapping[str, Any] | None = None, *,
          executor: str = "local", executor_options: Mapping[str, Any] | None = None,
          jobs: int | None = None, workdir: str | Path = ".", db: str | None = None,
          force: Sequence[str] = (), no_cache: bool = False, fail_fast: bool = False,
          new: bool = False, source: str | None = None, owner: str = "",
          project: str | None = None, on_progress: Callable[[Progress], None] | None = None,
          on_note: Callable[[str], None] | None = None) -> RunHandle:
    """Start ``pipeline`` in a background thread of this process; returns a handle at once
    (the options are :func:`run`'s)."""
    cfg = _config(workdir, executor_options, executor=executor, jobs=jobs, db=db, force=force,
                  no_cache=no_cache, fail_fast=fail_fast, new=new, source=source, owner=owner,
                  project=project, on_progress=on_progress, on_note=on_note)
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


def runs(workdir: str | Path = ".", db: str | None = None, limit: int = 50) -> list[RunRow]:
    """The runs of a working directory (or of the database ``db``), newest first."""
    return Store.open(Path(workdir), db).list_runs(limit)


def attach(run_id: str = "latest", workdir: str | Path = ".", db: str | None = None) -> RunHandle:
    """A handle to any recorded run (id, unique prefix or ``latest``), wherever it was started:
    query it, :meth:`~RunHandle.refresh` it, pause, resume or cancel it, wait for it."""
    store = Store.open(Path(workdir), db)
    return RunHandle(store, str(store.get_run(run_id)["id"]))


class Client:
    """The runs of one store: ``Client(workdir).runs()``, ``Client(workdir).run(id)``."""

    def __init__(self, workdir: str | Path = ".", db: str | None = None) -> None:
        self.store = Store.open(Path(workdir), db)

    def runs(self, limit: int = 50) -> list[RunRow]:
        return self.store.list_runs(limit)

    def run(self, run_id: str) -> RunHandle:
        return RunHandle(self.store, str(self.store.get_run(run_id)["id"]))


__all__ = ["Cancelled", "Client", "RunConfig", "RunHandle", "RunLockedError", "RunResult",
           "RunState", "attach", "execute", "load_pipeline", "plan", "run", "runs", "start",
           "Future", "MapFuture"]
