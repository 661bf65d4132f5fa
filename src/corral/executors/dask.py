"""The ``dask`` executor: send attempts to a ``distributed`` scheduler.

By default a private ``LocalCluster`` on 127.0.0.1 is started (``n_workers`` processes of
``threads_per_worker`` threads, default 1); with ``address`` an existing scheduler is used.
Each attempt becomes one future of :func:`run_attempt`, a top-level function that runs the
payload on the worker with :func:`corral.worker.execute.run_python` or ``run_shell`` and returns
an :class:`~corral.worker.execute.AttemptResult`. Workers need ``corral`` importable.

- Completions come from the futures' done callbacks, so ``poll`` does not ask the scheduler.
- ``cancel`` calls ``Future.cancel()``. Dask cannot interrupt a task already running in a worker
  thread: the attempt is reported ``CANCELLED`` at once, but its code runs to its end.
- Resources: with ``resources = true``, ``cores`` and ``gpus`` become dask worker resources
  (``{"cores": n, "GPU": g}``); workers of an external scheduler must declare them
  (``dask worker --resources "cores=8 GPU=1"``). Otherwise cores, memory and gpus are ignored
  without error. Memory is never mapped: the worker's ``memory_limit`` governs it.
- Shell tasks and Python tasks run in the pipeline directory; shell logs go to the attempt
  directory. With an external scheduler on other machines, both must be on a shared file system.
  ``cwd`` and ``env`` are process-wide: they are only reliable with ``threads_per_worker = 1``.
- Futures die with the client: ``reattach`` takes nothing over, ``shutdown`` stops an owned
  cluster (and with it any running attempt).

``distributed`` is imported only when the executor is created, so ``corral`` works without it.
"""

from __future__ import annotations

import functools
import os
import pickle
import queue
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

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
from corral.resources import Resources
from corral.worker.execute import (
    STDERR_FILE,
    STDOUT_FILE,
    AttemptResult,
    ShellPayload,
    attempt_environment,
    run_python,
    run_shell,
)

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ConfigError(
            "executor 'dask' needs an optional dependency (distributed); "
            "install it with: pip install 'corral[dask]'"
        ) from exc
    return distributed


# ---------------------------------------------------------------------------------- worker side


def run_attempt(payload: bytes, workdir: str, cwd: str, env: dict[str, str]) -> AttemptResult:
    """Run one pickled payload on a dask worker (top-level, so workers import it by name)."""
    task = pickle.loads(payload)
    with attempt_environment(env):
        if isinstance(task, ShellPayload):
            attempt_dir = Path(workdir)
            attempt_dir.mkdir(parents=True, exist_ok=True)
            return run_shell(task, Path(cwd), attempt_dir / STDOUT_FILE, attempt_dir / STDERR_FILE)
        if os.path.isdir(cwd) and os.getcwd() != cwd:
            os.chdir(cwd)
        return run_python(task, capture=True)


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


class DaskExecutor(Executor):
    """Runs attempts as futures on a dask ``distributed`` cluster."""

    kind: ClassVar[str] = "dask"

    def __init__(self, settings: DaskExecutorSettings, ctx: ExecutorContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._listener: Listener | None = None
        self._flights: dict[str, _Flight] = {}
        self._ended: queue.Queue[str] = queue.Queue()
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
        self._ended.put(attempt_id)

    def capacity(self) -> int | None:
        if self.ctx.max_parallel <= 0:
            return None
        return max(0, self.ctx.max_parallel - len(self._flights))

    # ------------------------------------------------------------------ completions

    def poll(self, timeout: float) -> list[Completion]:
        out: list[Completion] = []
        try:
            first = self._ended.get(timeout=max(0.0, timeout)) if timeout > 0 else None
        except queue.Empty:
            return out
        ids = [first] if first is not None else []
        while True:
            try:
                ids.append(self._ended.get_nowait())
            except queue.Empty:
                break
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
        """Cancel the futures; their completion is reported by ``poll`` (running code goes on)."""
        futures = [self._flights[a].future for a in attempt_ids if a in self._flights]
        if futures and self._client is not None:
            self._client.cancel(futures)  # type: ignore[no-untyped-call]
        for aid in attempt_ids:
            if aid in self._flights:
                self._cancelled.add(aid)
                self._ended.put(aid)  # done callbacks may not fire for cancelled futures


__all__ = ["DaskExecutor", "DaskExecutorSettings", "parse_settings", "run_attempt"]
