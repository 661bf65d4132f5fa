"""``corral.Executor``: a :class:`concurrent.futures.Executor` whose calls are a Corral run.

::

    import corral

    with corral.Executor(jobs=4) as ex:
        squares = list(ex.map(square, range(100)))

The executor opens one run row when it is created; every ``submit`` is a task of that run,
with its cache key (the function's code and the arguments), attempts, metrics and logs, so
``corral status`` and ``corral report`` show it like a pipeline run, and a second session that
calls the same function on the same arguments gets the stored result.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future as CFuture
from pathlib import Path
from typing import Any, NamedTuple

import cloudpickle

from corral.config import load_config
from corral.engine.engine import EngineOptions
from corral.engine.lifecycle import EngineListener
from corral.engine.plan import make_plan
from corral.engine.prepare import check_jobs, executor_context
from corral.errors import UsageError
from corral.executors import create_executor
from corral.graph import Graph
from corral.loading import installed_packages
from corral.model import TaskDef, task
from corral.resources import Resources
from corral.states import RunState
from corral.store import Store

from .live import Call, LiveEngine
from .progress import make_display
from .shared import Sharer, reads_local_files

HELD_MAX = 1024
"""Tasks of functions remembered by each of the executor's two look-ups (then forgotten: a
function met again is wrapped again, its code hashed again)."""


class CallOptions(NamedTuple):
    """What a call gets: its resources and extra attempts (see :meth:`Executor.options`)."""

    resources: Resources | None
    retries: int


class _Held(NamedTuple):
    """A function, the options it was given with, and its task (which holds both)."""

    fn: Callable[..., Any]
    opts: CallOptions
    task: TaskDef[Any, Any]


class Executor(concurrent.futures.Executor):
    """Run function calls as the tasks of one Corral run, on any executor kind.

    ``executor`` is an executor kind (``"local"``, ``"slurm"`` ...) or a profile of corral.toml
    (default: its ``[defaults] executor``, else ``"local"``); ``executor_options`` add to or
    override the profile's options; ``jobs`` the most calls running at once (default:
    the CPU count locally, no limit of Corral's own on a cluster); ``retries`` extra attempts
    of a failed call; ``cache=False`` always runs the calls; ``resources`` what each call gets;
    ``workdir`` where the store lives; ``name`` the run's name in ``corral runs``;
    ``progress`` a progress display (None: in Jupyter, or when standard error is a terminal).
    """

    def __init__(self, executor: str | None = None, *, resources: Resources | None = None,
                 workdir: str | Path = ".", jobs: int | None = None, retries: int = 0,
                 cache: bool = True, name: str = "interactive", db: str | None = None,
                 executor_options: Mapping[str, Any] | None = None,
                 progress: bool | None = None) -> None:
        _check_retries(retries)
        if progress is not None and not isinstance(progress, bool):
            raise UsageError(f"progress={progress!r} must be True, False or None (automatic)")
        self._defaults, self._cache = CallOptions(resources, retries), cache
        self._tasks: dict[tuple[int, int], _Held] = {}
        """(id(fn), id(options)) -> the task of the function with these options (at most
        :data:`HELD_MAX`; a miss looks in :attr:`_by_value`)."""
        self._by_value: dict[tuple[int, int, str | None], _Held] = {}
        """(id(fn), retries, repr(resources)) -> the same: ``ex.options(...).submit`` makes
        new options every call, yet the function's task (its code hash, its pickle) is made
        once."""
        self._lock = threading.Lock()
        self._shutdown = False
        self._error: BaseException | None = None
        self._futures: set[CFuture[Any]] = set()
        """The futures not done yet (each leaves the set when it is done)."""
        self.workdir = Path(workdir).resolve()
        kind, options = load_config(self.workdir).executor(executor)
        options.update(executor_options or {})
        self.store = Store.open(self.workdir, db)
        self.run_id = _open_run(self.store, self.workdir, name, kind, options,
                                check_jobs(jobs, kind))
        try:
            self._engine = self._make_engine(kind, options, jobs)
        except BaseException as exc:  # bad executor options: the run ends before it began
            self.store.release_run(self.run_id, state=RunState.FAILED.value, error=str(exc),
                                   finished_at=time.time())
            raise
        self._sharer = Sharer(self.store.cas, reads_local_files(self._engine.executor))
        self._display = make_display(progress, name)
        if self._display is not None:
            self._engine.on_progress = self._display.report
        self._closing_display_in_thread = False
        self._thread = threading.Thread(target=self._serve, name=f"corral-{self.run_id}",
                                        daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def _make_engine(self, kind: str, options: dict[str, Any], jobs: int | None) -> LiveEngine:
        n_jobs = check_jobs(jobs, kind)
        note = self.store.claim_run(self.run_id)
        del note  # a fresh run: nobody held it
        ctx = executor_context(self.run_id, self.workdir, n_jobs)
        backend = create_executor(kind, options, ctx)
        plan = make_plan(Graph(), self.workdir)
        engine = LiveEngine(self.store, plan, self.run_id, backend, EngineOptions(jobs=n_jobs),
                            ctx.work_root)
        engine.setup_live()
        return engine

    def _serve(self) -> None:
        engine, store = self._engine, self.store
        store.update_run(self.run_id, state=RunState.RUNNING.value, started_at=time.time())
        state = RunState.INTERRUPTED
        try:
            try:
                engine.executor.start(EngineListener(engine))
                state = engine.run()
            finally:
                engine.executor.shutdown()
        except BaseException as exc:
            self._error = exc
            try:  # keep what ended (rows of calls wait in memory to be written once)
                engine.rec.flush()
            except Exception:  # the store is what failed
                pass
            for fut in self._futures.copy():
                if not fut.done():
                    fut.set_exception(exc)
        finally:
            error = "; ".join(engine.errors[:5]) or None
            try:
                store.release_run(self.run_id, state=state.value, error=error,
                                  finished_at=time.time(), control="none")
            except Exception:  # the store is gone: the next engine finds the lock stale
                pass
            if self._closing_display_in_thread:
                self._close_display()

    def _close_display(self) -> None:
        if self._display is not None:
            self._display.close(self._engine.progress)

    # ------------------------------------------------------------------ the Executor API

    def _task(self, fn: Callable[..., Any], opts: CallOptions) -> TaskDef[Any, Any]:
        if isinstance(fn, TaskDef):
            return fn
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        key = (id(fn), id(opts))  # held below, so neither id is reused meanwhile
        held = self._tasks.get(key)
        if held is None or held[0] is not fn or held[1] is not opts:
            held = self._task_by_value(fn, opts)
            if len(self._tasks) >= HELD_MAX:
                self._tasks.clear()
            self._tasks[key] = held
        return held[2]

    def _task_by_value(self, fn: Callable[..., Any], opts: CallOptions) -> _Held:
        res = None if opts.resources is None else repr(opts.resources)
        key = (id(fn), opts.retries, res)
        held = self._by_value.get(key)
        if held is None or held[0] is not fn:
            name = getattr(fn, "__name__", type(fn).__name__)
            _send_by_value(fn)
            wrap = task(name=str(name), resources=opts.resources, retries=opts.retries,
                        cache=self._cache)
            held = _Held(fn, opts, wrap(fn))
            if len(self._by_value) >= HELD_MAX:  # (a new function per call: a lambda)
                self._by_value.clear()
            self._by_value[key] = held
        return held

    def _offer(self, calls: list[Call]) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            if not self._thread.is_alive():
                raise RuntimeError(f"the engine of run {self.run_id} stopped: {self._error}")
            for call in calls:
                self._futures.add(call.future)
                call.future.add_done_callback(self._call_done)
            self._engine.offer(calls)

    def _call_done(self, fut: CFuture[Any]) -> None:
        """A future is done (in the engine's thread, or the caller's when it cancels)."""
        self._futures.discard(fut)
        if fut.cancelled():
            self._engine.cancelled(fut)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> CFuture[Any]:
        """Run ``fn(*args, **kwargs)`` as a task of this run; its future at once."""
        return self.submit_with(self._defaults, fn, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:
        """``fn`` over the iterables, in order; the calls are submitted together (one array job
        on a cluster). ``chunksize`` is accepted for compatibility and ignored."""
        del chunksize
        return self.map_with(self._defaults, fn, iterables, timeout)

    def options(self, *, resources: Resources | None = None,
                retries: int | None = None) -> Calls:
        """The same run, other options for the calls made through it::

            big = ex.options(resources=Resources(memory="16G"), retries=2)
            fut = big.submit(assemble, sample)

        An option left out is the executor's."""
        if resources is not None and not isinstance(resources, Resources):
            raise UsageError(f"resources={resources!r} must be a corral.Resources")
        if retries is not None:
            _check_retries(retries)
        return Calls(self, CallOptions(
            self._defaults.resources if resources is None else resources,
            self._defaults.retries if retries is None else retries))

    def submit_with(self, opts: CallOptions, fn: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> CFuture[Any]:
        """:meth:`submit` with these options (see :meth:`options`)."""
        fut: CFuture[Any] = CFuture()
        the_task = self._task(fn, opts)
        args, kwargs = self._sharer.args(args, kwargs, {})
        self._offer([Call(the_task, args, kwargs, fut)])
        return fut

    def map_with(self, opts: CallOptions, fn: Callable[..., Any],
                 iterables: tuple[Iterable[Any], ...], timeout: float | None) -> Iterator[Any]:
        """:meth:`map` with these options (see :meth:`options`)."""
        end = None if timeout is None else time.monotonic() + timeout
        the_task = self._task(fn, opts)
        futures: list[CFuture[Any]] = []
        calls = []
        memo: dict[int, Any] = {}  # repeat(data): one object, hashed once
        for args in zip(*iterables, strict=False):
            fut: CFuture[Any] = CFuture()
            futures.append(fut)
            shared, _ = self._sharer.args(tuple(args), {}, memo)
            calls.append(Call(the_task, shared, {}, fut))
        self._offer(calls)
        return _results(futures, end)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new calls; ``cancel_futures`` cancels the calls not yet done (their cluster jobs
        too); ``wait`` waits for the run to end."""
        with self._lock:
            self._shutdown = True
            self._closing_display_in_thread = not wait
            if cancel_futures:
                for fut in self._futures.copy():
                    fut.cancel()
            self._engine.close()
        _LIVE.discard(self)
        if wait:
            self._thread.join()
            self._close_display()  # from the caller's thread: a notebook shows it in its cell

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # Ctrl-C inside the block: what is still queued is cancelled
        self.shutdown(wait=True, cancel_futures=exc_type is KeyboardInterrupt)


class Calls:
    """Calls of an executor's run with other options (:meth:`Executor.options`)."""

    def __init__(self, executor: Executor, opts: CallOptions) -> None:
        self.executor, self.opts = executor, opts

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> CFuture[Any]:
        """As :meth:`Executor.submit`, with these options."""
        return self.executor.submit_with(self.opts, fn, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any],
            timeout: float | None = None) -> Iterator[Any]:
        """As :meth:`Executor.map`, with these options."""
        return self.executor.map_with(self.opts, fn, iterables, timeout)


def _check_retries(retries: Any) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise UsageError(f"retries={retries!r} must be an integer >= 0")


_LIVE: weakref.WeakSet[Executor] = weakref.WeakSet()
"""Executors not yet shut down: at exit, their runs end with the calls they were given (as a
ThreadPoolExecutor's do), not killed with the interpreter and left *interrupted*."""


@atexit.register
def _shutdown_all() -> None:
    for ex in list(_LIVE):
        ex.shutdown(wait=True)


def _send_by_value(fn: Callable[..., Any]) -> None:
    """Functions of the user's own modules (a script's helper module, a test module) travel by
    value, as ``__main__``'s and a pipeline file's do: a worker elsewhere cannot import them.
    Installed packages, the standard library and Corral are imported by the worker."""
    name = getattr(fn, "__module__", None) or ""
    top = name.partition(".")[0]
    if not top or name == "__main__" or top.startswith(("_", "corral")) \
            or top in sys.stdlib_module_names or installed_packages({name}):
        return
    module = sys.modules.get(name)
    if module is not None:
        cloudpickle.register_pickle_by_value(module)


def _results(futures: list[CFuture[Any]], end: float | None) -> Iterator[Any]:
    try:
        futures.reverse()
        while futures:
            left = None if end is None else end - time.monotonic()
            yield futures.pop().result(left)
    finally:
        for fut in futures:
            fut.cancel()


def _open_run(store: Store, workdir: Path, name: str, kind: str, options: dict[str, Any],
              jobs: int) -> str:
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    store.create_run({
        "id": run_id, "identity": f"interactive:{run_id}", "pipeline": name,
        "source": "interactive", "params": {}, "workdir": str(workdir),
        "executor": {"kind": kind, "options": options, "jobs": jobs},
        "state": RunState.PENDING.value, "control": "none", "owner": "", "project": None,
        "created_at": time.time(), "n_tasks": 0,
        "options": {"force": [], "no_cache": False, "code_parts": {}, "interactive": True},
    })
    return run_id

