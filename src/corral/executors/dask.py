"""The ``dask`` executor: send attempts to a ``distributed`` scheduler.

By default a private ``LocalCluster`` on 127.0.0.1 is started (``n_workers`` processes of
``threads_per_worker`` threads, default 1); with ``address`` an existing scheduler is used.
Each attempt becomes one future of :func:`run_attempt`, a top-level function that workers
import by name (they need ``corral`` importable) and that returns an
:class:`~corral.worker.execute.AttemptResult`.

- The task does not run in the dask worker thread, which cannot be interrupted, but in a child
  process group on the worker: Python tasks in an attempt process running
  :func:`corral.worker.pool.worker_main` (kept for the next attempts of that worker unless it
  had to be killed), shell tasks through a :class:`corral.worker.spawner.Spawner`. The worker
  thread watches it and kills the group when the future is cancelled (or its client goes away),
  when ``resources.walltime`` passes (``TIMEOUT``) or when the process tree outgrows the dask
  worker's ``memory_limit`` (``OUT_OF_MEMORY``). Attempt processes die with their worker.
- Completions come from the futures' done callbacks, so ``poll`` does not ask the scheduler.
  Starts come from one event per attempt that the worker logs on :data:`STARTED_TOPIC` when the
  task starts (``Worker.log_event``); the client subscribes to it and ``poll`` passes the events
  to ``listener.started`` (no scheduler query per task or poll).
- ``cancel`` calls ``Future.cancel()``: the attempt is reported ``CANCELLED`` at once, and a
  worker running it sees its key released and kills its process group.
- Resources: with ``resources = true``, ``cores`` and ``gpus`` become dask worker resources
  (``{"cores": n, "GPU": g}``); workers of an external scheduler must declare them
  (``dask worker --resources "cores=8 GPU=1"``). Otherwise cores and gpus are ignored without
  error. ``memory`` is not mapped: the worker's ``memory_limit`` governs each attempt.
- Tasks run in the pipeline directory (Python tasks in the worker's own directory when it does
  not exist there) with the task's ``env``; shell logs go to the attempt directory. With an
  external scheduler on other machines, shell tasks need a shared file system.
- Futures die with the client: ``reattach`` takes nothing over, ``shutdown`` stops an owned
  cluster (and with it any running attempt).

``distributed`` is imported only when the executor is created, so ``corral`` works without it.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import pickle
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, Protocol, TypeVar

import psutil

from corral.errors import ConfigError, ExecutorError, ResourceError
from corral.executors.base import (
    Completion,
    Executor,
    ExecutorContext,
    Listener,
    Metrics,
    Outcome,
    TaskSpec,
)
from corral.executors.processes import kill_group, kill_tree
from corral.optional import require
from corral.resources import Resources
from corral.worker.children import become_subreaper
from corral.worker.execute import (
    STDERR_FILE,
    STDOUT_FILE,
    AttemptResult,
    ShellPayload,
    make_output_dirs,
    shell_argv,
    shell_outcome,
)
from corral.worker.metrics import hostname, tree_rss
from corral.worker.output import salvage, scratch_paths
from corral.worker.pool import worker_main
from corral.worker.spawner import Spawner

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster


def _import_distributed() -> Any:
    return require("distributed", "executor 'dask'", "dask")


# ---------------------------------------------------------------------------------- worker side
#
# ``run_attempt`` runs in a dask worker thread but does not run the task there: a thread cannot
# be interrupted. A Python task goes to an attempt process (``corral.worker.pool.worker_main``
# behind a pipe; reused by the next attempts of this worker process while it is not killed), a
# shell task to a ``corral.worker.spawner.Spawner``; both lead their own process group. Every
# ``_TICK`` the thread asks the dask worker whether the attempt's key is still wanted (it is not
# once the future is cancelled or its client is gone) and compares the walltime and the memory
# limit, and kills the process group when one of them says stop. An attempt process also
# watches a pipe from its dask worker and kills its group when the worker process dies.

_TICK = 0.1
"""Seconds between two checks of a running attempt (cancelled, walltime, memory)."""
_MEMORY_TICK = 0.5
_READY = "ready"
"""First message of a new attempt process: imports are done, the walltime clock may start."""
_RELEASED_STATES = frozenset({"cancelled", "released", "forgotten"})
"""States of a task on a dask worker whose result nobody wants any more."""
STARTED_TOPIC = "corral-started"
"""Topic of the worker events saying an attempt started (``{"key", "started", "host"}``): the
scheduler passes them on to the subscribed clients and keeps the last 1,000 of a topic."""


class _Stop(NamedTuple):
    outcome: str
    reason: str


class _Stopped(Exception):
    def __init__(self, stop: _Stop) -> None:
        super().__init__(stop.reason)
        self.stop = stop


class _Watch:
    """Whether a running attempt must be stopped, asked of the dask worker running it."""

    def __init__(self, walltime: float | None, worker: Any = None) -> None:
        self.walltime = walltime
        self.worker = worker
        self.key = worker.get_current_task() if worker is not None else None
        manager = getattr(worker, "memory_manager", None)
        self.memory_limit: int | None = getattr(manager, "memory_limit", None)
        self.started = time.time()
        self._clock: float | None = None
        self._next_memory_check = 0.0
        self._announced = False

    @classmethod
    def here(cls, walltime: float | None) -> _Watch:
        """The watch of the attempt running in this thread (no worker: only the walltime)."""
        try:
            from distributed import get_worker

            return cls(walltime, get_worker())
        except (ImportError, ValueError, AttributeError):
            return cls(walltime)

    @property
    def slots(self) -> int:
        """Attempts this dask worker runs at once."""
        nthreads = getattr(getattr(self.worker, "state", None), "nthreads", 1)
        return nthreads if isinstance(nthreads, int) and nthreads > 0 else 1

    def start_clock(self) -> None:
        """The task starts now: its walltime counts from here, and the client is told."""
        self.started, self._clock = time.time(), time.monotonic()
        if self.worker is not None and not self._announced:
            self._announced = True
            event = {"key": str(self.key), "started": self.started, "host": hostname()}
            try:  # one message to the scheduler, batched with the worker's others
                self.worker.log_event(STARTED_TOPIC, event)
            except Exception:  # an old or odd worker: the start shows with the result
                pass

    def released(self) -> bool:
        """Whether the dask worker no longer wants the result (future cancelled, client gone)."""
        try:
            ts = self.worker.state.tasks.get(self.key)
        except AttributeError:
            return False
        return ts is None or ts.state in _RELEASED_STATES

    def verdict(self, pid: int) -> _Stop | None:
        """Why the attempt whose process group leader is ``pid`` must stop, or ``None``."""
        if self.released():
            return _Stop(Outcome.CANCELLED.value, "cancelled")
        wt = self.walltime
        if wt is not None and self._clock is not None and time.monotonic() - self._clock > wt:
            return _Stop(Outcome.TIMEOUT.value, f"killed after exceeding its walltime of {wt} s")
        return self._memory_verdict(pid)

    def _memory_verdict(self, pid: int) -> _Stop | None:
        now, limit = time.monotonic(), self.memory_limit
        if not limit or now < self._next_memory_check:
            return None
        self._next_memory_check = now + _MEMORY_TICK
        try:
            rss = tree_rss(psutil.Process(pid))
        except psutil.Error:
            return None
        if rss <= limit:
            return None
        return _Stop(Outcome.OUT_OF_MEMORY.value, (
            f"killed for using {rss / 2**20:.0f} MiB, over the dask worker's memory_limit of "
            f"{limit / 2**20:.0f} MiB; give the workers more memory or run fewer per machine"
        ))

    def ended(self, stop: _Stop, exit_code: int | None = None) -> AttemptResult:
        """The result of an attempt that left no result of its own."""
        metrics = {"started": self.started, "ended": time.time(), "host": hostname(),
                   "exit_code": exit_code}
        return AttemptResult(stop.outcome, metrics, error=stop.reason)


def run_attempt(
    payload: bytes, workdir: str, cwd: str, env: dict[str, str], walltime: float | None = None
) -> AttemptResult:
    """Run one pickled payload on a dask worker (top-level, so workers import it by name), in a
    child process group that is killed when the future is cancelled or ``walltime`` passes."""
    task = pickle.loads(payload)
    watch = _Watch.here(walltime)
    if isinstance(task, ShellPayload):
        return _run_shell(task, Path(workdir), cwd, env, watch)
    where = cwd if os.path.isdir(cwd) else os.getcwd()  # no shared file system: run anywhere
    child = _CHILDREN.take(where)
    if child is not None and not child.alive():
        child.close()
        child = None
    try:
        child = child or _Child.start(where)
    except OSError as exc:
        return watch.ended(_Stop("failed", f"the attempt process could not start: {exc}"))
    # with a shared file system the attempt writes its logs into its directory; else they
    # come back in the result
    logdir = workdir if where == cwd else None
    result, reusable = child.run(payload, env, watch, logdir)
    if reusable:
        _CHILDREN.give(where, child, watch.slots)
    return result




class _Child:
    """An attempt process: ``worker_main`` over a pipe, in its own process group."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection, lifeline: int,
                 cwd: str) -> None:
        self.proc, self.conn, self.cwd = proc, conn, cwd
        self.lifeline: int | None = lifeline
        """Write end of the pipe the process watches; it kills its group when this closes."""
        self.ready = False
        self.kept: set[int] = set()
        """Processes its tasks chose to leave running (spared when it is killed)."""

    @classmethod
    def start(cls, cwd: str) -> _Child:
        ours, theirs = multiprocessing.Pipe()
        life_r, life_w = os.pipe()
        fds = (theirs.fileno(), life_r)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own module, fixed argv
                [sys.executable, "-m", __name__, *map(str, fds)], cwd=cwd,
                stdin=subprocess.DEVNULL, pass_fds=fds, start_new_session=True,
            )
        except OSError:
            ours.close()
            os.close(life_w)
            raise
        finally:
            theirs.close()
            os.close(life_r)
        return cls(proc, ours, life_w, cwd)

    def run(self, payload: bytes, env: dict[str, str], watch: _Watch, logdir: str | None
            ) -> tuple[AttemptResult, bool]:
        """Run one attempt; returns its result and whether this process may run another."""
        try:
            if not self.ready:
                self._receive(watch)  # _READY
                self.ready = True
            watch.start_clock()
            self.conn.send([("attempt", payload, env, logdir)])
            ((_, result),) = self._receive(watch)
            self.kept.update(result.metrics.get("kept") or ())
            return result, True
        except _Stopped as stopped:
            self.close(kill=True, logdir=logdir)
            return watch.ended(stopped.stop, self.proc.returncode), False
        except (EOFError, OSError):
            self.close(kill=True, logdir=logdir)
            code = self.proc.returncode
            how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
            return watch.ended(_Stop("failed", f"the attempt process died ({how})"), code), False

    def _receive(self, watch: _Watch) -> Any:
        """The next message of the process; raises :class:`_Stopped` if the attempt must stop
        first and ``EOFError`` if the process died."""
        while True:
            if self.conn.poll(_TICK):
                return self.conn.recv()
            if self.proc.poll() is not None and not self.conn.poll(0):
                raise EOFError
            stop = watch.verdict(self.proc.pid)
            if stop is not None:
                raise _Stopped(stop)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, kill: bool = False, logdir: str | None = None) -> None:
        """End the process (its lifeline closes; ``kill``: SIGKILL it and what its task started
        first, keeping what the attempt wrote in ``logdir``) and reap it."""
        if kill:
            kill_tree(self.proc.pid, self.kept)
            _keep_output(self.proc.pid, logdir)
        if self.lifeline is not None:
            os.close(self.lifeline)
            self.lifeline = None
        self.conn.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)
            self.proc.wait()


def _keep_output(pid: int, logdir: str | None) -> None:
    """The output of the killed attempt process ``pid``: into ``logdir``, or dropped."""
    if logdir is not None:
        salvage(Path(logdir).parent, pid, logdir)
    for scratch in scratch_paths(tempfile.gettempdir(), pid):
        with contextlib.suppress(OSError):
            scratch.unlink()


class _Closable(Protocol):
    def close(self) -> None: ...


_P = TypeVar("_P", bound=_Closable)


class _Pool(Generic[_P]):
    """Idle helper processes of this (dask worker) process, by key, for the next attempts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[str, _P]] = []

    def take(self, key: str) -> _P | None:
        with self._lock:
            at = next((i for i, (k, _) in enumerate(self._idle) if k == key), None)
            return self._idle.pop(at)[1] if at is not None else None

    def give(self, key: str, item: _P, keep: int) -> None:
        """Keep ``item`` for a later attempt; at most ``keep`` stay idle (oldest go first)."""
        with self._lock:
            self._idle.append((key, item))
            extra, self._idle = self._idle[:-keep], self._idle[-keep:]
        for _, old in extra:
            old.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, item in idle:
            item.close()


_CHILDREN: _Pool[_Child] = _Pool()
"""Attempt processes for Python tasks, by working directory."""
_SPAWNERS: _Pool[Spawner] = _Pool()
"""Spawners for shell tasks (any directory: each request says where)."""


def _run_shell(
    task: ShellPayload, workdir: Path, cwd: str, env: dict[str, str], watch: _Watch
) -> AttemptResult:
    """Run a shell task through a spawner (exact CPU time and peak memory, own session)."""
    workdir.mkdir(parents=True, exist_ok=True)
    problem = make_output_dirs(task.outputs, cwd)
    if problem:
        return watch.ended(_Stop("failed", problem))
    spawner = _SPAWNERS.take("")
    if spawner is not None and spawner.proc.poll() is not None:
        spawner.close()
        spawner = None
    try:
        spawner = spawner or Spawner()
    except OSError as exc:
        return watch.ended(_Stop("failed", f"the command could not start: {exc}"))
    try:
        spawner.start("attempt", shell_argv(task.command), cwd, str(workdir / STDOUT_FILE),
                      str(workdir / STDERR_FILE), {**os.environ, **env})
        result = _await_shell(spawner, task, cwd, watch)
    except OSError as exc:
        spawner.close()
        return watch.ended(_Stop("failed", f"the command's spawner failed: {exc}"))
    _SPAWNERS.give("", spawner, watch.slots)  # the command is over, even if it was killed
    return result


def _await_shell(spawner: Spawner, task: ShellPayload, cwd: str, watch: _Watch) -> AttemptResult:
    pid: int | None = None
    stop: _Stop | None = None
    while True:
        select.select([spawner.fileno()], [], [], _TICK)
        for msg in spawner.collect():
            if "pid" in msg:
                pid = int(msg["pid"])
                watch.start_clock()
            elif "error" in msg:
                return watch.ended(_Stop("failed", f"the command could not start: {msg['error']}"))
            else:
                return _shell_result(msg, task, cwd, watch, stop)
        if pid is not None and stop is None:
            stop = watch.verdict(pid)
            if stop is not None:
                kill_group(pid)


def _shell_result(
    usage: dict[str, Any], task: ShellPayload, cwd: str, watch: _Watch, stop: _Stop | None
) -> AttemptResult:
    code = int(usage["status"])
    metrics = {
        "started": watch.started, "ended": time.time(), "cpu_user": usage["utime"],
        "cpu_system": usage["stime"], "peak_rss": usage["maxrss"], "exit_code": code,
        "host": hostname(),
    }
    if stop is not None:
        return AttemptResult(stop.outcome, metrics, error=stop.reason)
    outcome, error = shell_outcome(code, task.outputs, Path(cwd))
    return AttemptResult(outcome, metrics, None, error)


def _attempt_process(argv: Sequence[str]) -> int:
    """Main of an attempt process (``python -m corral.executors.dask CONN_FD LIFELINE_FD``)."""
    conn_fd, life_fd = int(argv[0]), int(argv[1])
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)  # lead a group: the lifeline and kills take the whole group
    become_subreaper()  # orphans of its tasks stay in its tree, to be ended with them
    threading.Thread(target=_die_with_parent, args=(life_fd,), name="corral-lifeline",
                     daemon=True).start()
    conn = Connection(conn_fd)
    conn.send(_READY)
    worker_main(conn, os.getcwd())
    return 0


def _die_with_parent(fd: int) -> None:
    """Block on the lifeline until it closes (the dask worker closed it or died); then kill this
    process group, which stops the running task and the commands it started."""
    try:
        while os.read(fd, 64):
            pass
    finally:
        os.killpg(0, signal.SIGKILL)


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DaskExecutorSettings:
    """Options of a ``dask`` executor profile."""

    address: str | None = None
    """Scheduler to connect to (``tcp://host:8786``); default: start a private LocalCluster."""
    n_workers: int | None = None
    """Workers of the LocalCluster; default: the ``-j`` limit, at most the CPU count."""
    threads_per_worker: int = 1
    processes: bool = True
    """LocalCluster workers as processes (True) or threads of this process (False)."""
    resources: bool = False
    """Map ``cores``/``gpus`` to dask worker resources ``cores``/``GPU``."""


_SETTING_NAMES = tuple(f.name for f in fields(DaskExecutorSettings))


def parse_settings(options: Mapping[str, Any]) -> DaskExecutorSettings:
    """Validate profile options into :class:`DaskExecutorSettings` (unknown keys: ConfigError)."""
    unknown = sorted(set(options) - set(_SETTING_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown dask executor option(s) {', '.join(unknown)}; "
            f"valid options are {', '.join(_SETTING_NAMES)}"
        )
    values: dict[str, Any] = {}
    for name, value in options.items():
        if name == "address":
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"dask option address={value!r} must be like tcp://host:8786")
        elif name in ("n_workers", "threads_per_worker"):
            if value is None and name == "n_workers":
                pass
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"dask option {name}={value!r} must be a positive integer")
        elif not isinstance(value, bool):
            raise ConfigError(f"dask option {name}={value!r} must be true or false")
        values[name] = value
    return DaskExecutorSettings(**values)


# ---------------------------------------------------------------------------------- executor


@dataclass
class _Flight:
    spec: TaskSpec
    future: Future[AttemptResult]
    submitted: float
    started: bool = False


class DaskExecutor(Executor):
    """Runs attempts as futures on a dask ``distributed`` cluster."""

    kind: ClassVar[str] = "dask"
    stages_inputs: ClassVar[bool] = False

    def __init__(self, settings: DaskExecutorSettings, ctx: ExecutorContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.reads_engine_files = settings.address is None  # a LocalCluster on this machine
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._listener: Listener | None = None
        self._flights: dict[str, _Flight] = {}
        self._events: queue.Queue[str | Mapping[str, Any]] = queue.Queue()
        """Attempt ids whose future is done (from done callbacks) and start events (from the
        client's event handler), in arrival order; ``poll`` consumes them."""
        self._cancelled: set[str] = set()

    @classmethod
    def from_options(cls, options: dict[str, Any], ctx: ExecutorContext) -> DaskExecutor:
        _import_distributed()
        return cls(parse_settings(options), ctx)

    # ------------------------------------------------------------------ lifecycle

    def _worker_count(self) -> int:
        if self.settings.n_workers:
            return self.settings.n_workers
        cpus = os.cpu_count() or 1
        return max(1, min(cpus, self.ctx.max_parallel or cpus))

    def start(self, listener: Listener) -> None:
        """Start the LocalCluster (or connect to ``address``) and a client."""
        distributed = _import_distributed()
        self._listener = listener
        s = self.settings
        try:
            if s.address:
                self._client = distributed.Client(s.address, timeout=30)
                self._client.subscribe_topic(STARTED_TOPIC, self._on_started)
                return
            extra: dict[str, Any] = {}
            if s.resources:
                extra["resources"] = {"cores": s.threads_per_worker}
            if s.processes:
                extra["host"] = "127.0.0.1"  # loopback only; threads use in-process comms
            self._cluster = distributed.LocalCluster(
                n_workers=self._worker_count(),
                threads_per_worker=s.threads_per_worker,
                processes=s.processes,
                dashboard_address=":0",  # a free port: never clash with another cluster
                **extra,
            )
            self._client = distributed.Client(self._cluster)
            self._client.subscribe_topic(STARTED_TOPIC, self._on_started)
        except (OSError, TimeoutError) as exc:
            where = s.address or "a LocalCluster"
            raise ExecutorError(f"cannot start the dask client for {where}: {exc}") from exc

    def shutdown(self) -> None:
        """Close the client, and the LocalCluster if this executor started it."""
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        _CHILDREN.close()  # idle helpers of threaded workers (processes = false) live here
        _SPAWNERS.close()

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": self.kind, "resources": self.settings.resources}
        info["address"] = self.settings.address or (
            self._cluster.scheduler_address if self._cluster is not None else None
        )
        return info

    # ------------------------------------------------------------------ submit

    def validate(self, resources: Resources) -> None:
        if resources.nodes > 1:
            raise ResourceError(
                f"the dask executor runs each task in one worker; nodes={resources.nodes} "
                "needs a batch scheduler (slurm, pbs, ...)"
            )
        if not self.settings.resources or self.settings.address:
            return
        if resources.cores > self.settings.threads_per_worker or resources.gpus:
            raise ResourceError(
                f"cores={resources.cores}, gpus={resources.gpus} cannot be met by the local "
                f"dask workers ({self.settings.threads_per_worker} thread(s), no GPU resource); "
                "raise threads_per_worker or set resources = false"
            )

    def _dask_resources(self, resources: Resources) -> dict[str, float] | None:
        if not self.settings.resources:
            return None
        wanted: dict[str, float] = {"cores": resources.cores}
        if resources.gpus:
            wanted["GPU"] = resources.gpus
        return wanted

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        client, listener = self._client, self._listener
        if client is None or listener is None:
            raise ExecutorError("the dask executor was not started; call start(listener) first")
        for spec in batch:
            self.validate(spec.resources)
        for spec in batch:
            future = client.submit(
                run_attempt,
                spec.payload,
                str(spec.workdir),
                str(spec.cwd),
                dict(spec.env),
                spec.resources.walltime_seconds,
                key=f"corral-{spec.attempt_id}",
                pure=False,
                resources=self._dask_resources(spec.resources),
            )
            self._flights[spec.attempt_id] = _Flight(spec, future, time.time())
            on_done = functools.partial(self._on_done, spec.attempt_id)
            future.add_done_callback(on_done)  # type: ignore[no-untyped-call]
            listener.submitted(spec.attempt_id, str(future.key))

    def _on_done(self, attempt_id: str, _future: object) -> None:
        """Done callback (runs in the client's thread): wake ``poll``."""
        self._events.put(attempt_id)

    def _on_started(self, event: tuple[float, Any]) -> None:
        """Handler of :data:`STARTED_TOPIC` events (runs in the client's thread): wake ``poll``,
        which tells the listener (events of other clients' keys are ignored there)."""
        msg = event[1] if isinstance(event, tuple | list) and len(event) == 2 else None
        if isinstance(msg, Mapping):
            self._events.put(msg)

    def _report_started(self, msg: Mapping[str, Any]) -> None:
        key = str(msg.get("key", ""))
        flight = self._flights.get(key.removeprefix("corral-"))
        if flight is None or flight.started or str(flight.future.key) != key:
            return
        flight.started = True
        try:
            when = float(msg.get("started") or time.time())
        except (TypeError, ValueError):
            when = time.time()
        assert self._listener is not None
        self._listener.started(flight.spec.attempt_id, when, msg.get("host"))

    def capacity(self) -> int | None:
        if self.ctx.max_parallel <= 0:
            return None
        return max(0, self.ctx.max_parallel - len(self._flights))

    # ------------------------------------------------------------------ completions

    def poll(self, timeout: float) -> list[Completion]:
        """Report starts as they arrive; wait until the first completion or ``timeout``, then
        return every completion known."""
        deadline = time.monotonic() + max(0.0, timeout)
        ids: list[str] = []
        while True:
            wait = deadline - time.monotonic()
            try:
                event = self._events.get(timeout=wait) if wait > 0 and not ids else \
                    self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, str):
                ids.append(event)
            else:
                self._report_started(event)
        out: list[Completion] = []
        for attempt_id in ids:
            flight = self._flights.pop(attempt_id, None)
            if flight is not None:
                out.append(self._completion(flight))
                self._cancelled.discard(attempt_id)
        return out

    def _completion(self, flight: _Flight) -> Completion:
        future, aid = flight.future, flight.spec.attempt_id
        metrics = Metrics(submitted=flight.submitted, native_id=str(future.key))
        status = future.status
        if status == "finished":
            res: AttemptResult = future.result()
            metrics = Metrics.from_dict(res.metrics)
            metrics.submitted, metrics.native_id = flight.submitted, str(future.key)
            try:
                outcome = Outcome(res.outcome)
            except ValueError:
                outcome = Outcome.FAILED
            return Completion(aid, outcome, metrics, res.result, res.error, res.stdout, res.stderr)
        if status == "cancelled" or (aid in self._cancelled and status != "error"):
            return Completion(aid, Outcome.CANCELLED, metrics, error="cancelled")
        return self._error_completion(aid, future, metrics)

    def _error_completion(
        self, aid: str, future: Future[AttemptResult], metrics: Metrics
    ) -> Completion:
        distributed = _import_distributed()
        try:
            exc = future.exception(timeout=5)  # type: ignore[no-untyped-call]
        except Exception as other:
            exc = other
        if isinstance(exc, distributed.KilledWorker):
            return Completion(
                aid,
                Outcome.NODE_FAILURE,
                metrics,
                error=f"the dask worker running it died ({exc}); it may have run out of memory",
            )
        text = "".join(traceback.format_exception(exc)) if exc is not None else "unknown error"
        return Completion(aid, Outcome.FAILED, metrics, error=f"dask could not run it: {text}")

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        """Cancel the futures; their completion is reported by ``poll``. A worker running one sees
        its key released and kills the attempt's process group within ``_TICK`` seconds."""
        futures = [self._flights[a].future for a in attempt_ids if a in self._flights]
        if futures and self._client is not None:
            self._client.cancel(futures)  # type: ignore[no-untyped-call]
        for aid in attempt_ids:
            if aid in self._flights:
                self._cancelled.add(aid)
                self._events.put(aid)  # done callbacks may not fire for cancelled futures


__all__ = ["STARTED_TOPIC", "DaskExecutor", "DaskExecutorSettings", "parse_settings", "run_attempt"]

if __name__ == "__main__":
    sys.exit(_attempt_process(sys.argv[1:]))
