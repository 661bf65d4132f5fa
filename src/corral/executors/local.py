"""The local executor: a pool of worker processes for Python tasks, subprocesses for shell tasks.

Python tasks travel to long-lived workers (cloudpickle; functions cached per worker) in small
chunks, so thousands of tiny tasks cost little; a task with a walltime or memory limit is sent
alone, so that killing its worker to enforce the limit hurts no other task. Shell tasks run as
``bash`` subprocesses in their own session; their exit is seen through a pidfd and reaped with
``wait4`` for exact CPU time and peak memory. At most ``max_parallel`` (``-j``) slots are busy at
once; an attempt takes ``resources.cores`` of them (all of them if it asks for more); a parallel
task (``tasks=N``) runs under ``mpirun -np N`` and takes N x ``cores_per_task``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from multiprocessing.connection import Connection, wait
from typing import Any

import psutil

from corral.errors import ConfigError
from corral.executors.base import (
    Completion,
    Executor,
    ExecutorContext,
    Listener,
    Metrics,
    Outcome,
    TaskKind,
    TaskSpec,
)
from corral.executors.processes import kill_group, kill_tree, over_memory_request
from corral.launchers import check_launcher, effective_launcher, launch_argv, launched_payload
from corral.resources import PerResources
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
from corral.worker.output import salvage
from corral.worker.pool import pool_main
from corral.worker.spawner import Spawner

CHUNK = 32
"""Most attempts sent to a worker at once."""
CHUNK_SECONDS = 0.02
"""Work per chunk, by the durations seen (see LocalExecutor._chunk_size)."""
LIMIT_CHECK_INTERVAL = 0.2
QUEUED_PER_SLOT = 4
"""Commands waiting at the spawner behind running ones, at most, per slot (see _hand_over)."""
HAND_OVER_SECONDS = 0.5
"""Only commands of a name seen to take less are handed over (a pause lets them run)."""


@dataclass
class _Worker:
    proc: Any
    conn: Connection
    running: dict[str, TaskSpec] = field(default_factory=dict)
    """Attempts sent to this worker and not yet reported, in order."""
    limited: bool = False
    since: float = 0.0
    cost: int = 1
    """Slots its current chunk takes (its attempts run one after another)."""
    kept: set[int] = field(default_factory=set)
    """Processes its tasks chose to leave running (spared when it is killed)."""


@dataclass
class _Shell:
    spec: TaskSpec
    pid: int | None
    """Known once the spawner reports the start."""
    started: float
    limit_outcome: tuple[Outcome, str] | None = None
    queued: bool = False
    """Given to the spawner to start when another command ends (see ``_hand_over``); takes
    no slot until then."""


@dataclass
class LocalSettings:
    workers: int | None = None
    """Python worker processes (default: the -j limit)."""
    start_method: str = "forkserver"
    prestart: bool = True
    """Start the fork server (and its imports) when the run starts (False: at the first Python
    task). Workers are forked from it as Python tasks arrive, whatever this says."""
    launcher: str = "none"
    """Launcher of parallel tasks that name none (``mpi`` / ``mpirun`` / ``mpiexec``)."""
    launcher_args: list[str] = field(default_factory=list)
    """Extra arguments of the launcher, e.g. ``["--oversubscribe"]``."""


class LocalExecutor(Executor):
    kind = "local"
    applies_parallel_limit = True
    stages_inputs = False

    def __init__(self, settings: LocalSettings, ctx: ExecutorContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.slots = max(1, ctx.max_parallel)
        self.n_workers = max(1, min(settings.workers or self.slots, self.slots))
        self.pending: deque[TaskSpec] = deque()
        self.workers: list[_Worker] = []
        self.shells: dict[str, _Shell] = {}
        self._followers: dict[str, str] = {}
        """A command's id (running, or itself queued) -> the queued command the spawner starts
        when it ends."""
        self._spawner: Spawner | None = None
        self._base_env = dict(os.environ)
        self._solo: set[str] = set()
        self.done: list[Completion] = []
        self.cancelled: set[str] = set()
        self._mp: Any = mp.get_context(settings.start_method)
        self._last_limit_check = 0.0
        self._listener: Listener | None = None
        self._durations: dict[str, float] = {}
        """Running mean duration of the attempts of each task name (for chunk sizes)."""
        self._costs = PerResources(lambda res, _: min(max(1, res.total_cores), self.slots))

    @classmethod
    def from_options(cls, options: dict[str, Any], ctx: ExecutorContext) -> LocalExecutor:
        valid = set(LocalSettings.__dataclass_fields__)
        unknown = set(options) - valid
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} for the local executor; "
                f"valid options are {sorted(valid)}"
            )
        settings = LocalSettings(**options)
        check_launcher(settings.launcher)
        return cls(settings, ctx)

    # ------------------------------------------------------------------ seam

    @classmethod
    def warm_up(cls, options: Mapping[str, Any], preload: Sequence[str] = ()) -> None:
        """Launch the fork server now: it imports corral's worker and the packages the pipeline
        file imported (e.g. numpy) while the engine opens the store and plans the run."""
        if options.get("start_method", "forkserver") == "forkserver" and \
                options.get("prestart", True):
            _start_forkserver(preload)

    def start(self, listener: Listener) -> None:
        """Make sure the fork server runs (:meth:`warm_up` started it while the engine prepared
        the run, importing the pipeline file's packages, e.g. numpy). The workers are forked
        from it when the first Python tasks arrive, so a fully cached run starts none."""
        self._listener = listener
        if self.settings.start_method == "forkserver":
            _start_forkserver(self.ctx.preload)

    def capacity(self) -> int | None:
        return max(0, self.slots * CHUNK * 2 - len(self.pending))

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        self.pending.extend(self._launched(s) for s in batch)
        self._dispatch()

    def _launched(self, spec: TaskSpec) -> TaskSpec:
        """``spec`` with its payload started by its launcher (``mpirun -np N``), if any."""
        r = spec.resources
        if r.launcher is None and not r.parallel:
            return spec
        name = effective_launcher(r, self.kind, self.settings.launcher)
        argv = launch_argv(r, name, self.settings.launcher_args)
        if not argv:
            return spec
        payload = launched_payload(spec.kind is TaskKind.SHELL, spec.payload, argv, spec.workdir)
        return dataclasses.replace(spec, payload=payload)

    def withdraw(self) -> list[str]:
        """Drop attempts not started yet (for pause); returns their ids."""
        ids = [s.attempt_id for s in self.pending]
        self.pending.clear()
        return ids

    def poll(self, timeout: float) -> list[Completion]:
        self._dispatch()
        if not self.done:
            waitables: list[Any] = [w.conn for w in self.workers if w.running]
            waitables += [w.proc.sentinel for w in self.workers if w.running]
            if self.shells and self._spawner is not None:
                waitables.append(self._spawner.fileno())
            if waitables:
                limit_due = self._has_limits()
                wait(waitables, LIMIT_CHECK_INTERVAL if limit_due else timeout)
            elif timeout > 0 and not self.pending:
                time.sleep(min(timeout, 0.05))
        self._collect_workers()
        self._collect_shells()
        self._enforce_limits()
        self._dispatch()
        done, self.done = self.done, []
        return done

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        ids = set(attempt_ids)
        self.cancelled |= ids
        for spec in [s for s in self.pending if s.attempt_id in ids]:
            self.pending.remove(spec)
            self.done.append(Completion(spec.attempt_id, Outcome.CANCELLED, error="cancelled"))
        # commands queued behind running ones are dropped first: a running one killed before
        # would start its follower (one that started meanwhile is killed when its pid comes)
        mine = [sh for sh in self.shells.values() if sh.spec.attempt_id in ids]
        for sh in mine:
            if sh.queued and self._spawner is not None:
                self._spawner.drop(sh.spec.attempt_id)
        for sh in mine:
            if not sh.queued and sh.pid is not None:
                kill_group(sh.pid)
        for w in list(self.workers):
            if ids & set(w.running):
                self._kill_worker(w, Outcome.CANCELLED, "cancelled", ids)

    def shutdown(self) -> None:
        if self._spawner is not None:  # no command may start behind one killed below
            for ident in [i for i, sh in self.shells.items() if sh.queued]:
                self._spawner.drop(ident)
        for sh in self.shells.values():
            if not sh.queued and sh.pid is not None:
                kill_group(sh.pid)
        if self._spawner is not None:
            self._spawner.close()
            self._spawner = None
        for w in self.workers:
            try:
                w.conn.send(None)
            except OSError:
                pass
        for w in self.workers:
            w.proc.join(timeout=2)
            if w.proc.is_alive():
                kill_tree(w.proc.pid, w.kept)
        self.workers.clear()
        self.shells.clear()

    # ------------------------------------------------------------------ dispatch

    def _cost(self, spec: TaskSpec) -> int:
        """Slots an attempt takes: its cores (ranks x cores of each rank), at most all of them
        (a task asking for more cores than ``-j`` still runs, alone). Once per Resources
        object (a map's elements share theirs; asked several times per attempt)."""
        return self._costs.get(spec.resources)

    def _busy(self) -> int:
        """Slots in use: a worker's chunk runs its attempts one after another."""
        return sum(self._cost(sh.spec) for sh in self.shells.values() if not sh.queued) + sum(
            w.cost for w in self.workers if w.running)

    def _has_limits(self) -> bool:
        return any(w.limited for w in self.workers if w.running) or any(
            _limited(s.spec) for s in self.shells.values()
        )

    def _dispatch(self) -> None:
        # first come, first served: a many-core attempt at the head waits for its slots rather
        # than being overtaken for ever by 1-core ones
        while self.pending and self._busy() + self._cost(self.pending[0]) <= self.slots:
            spec = self.pending[0]
            if spec.kind is TaskKind.SHELL:
                self.pending.popleft()
                self._start_shell(spec)
                continue
            worker = self._idle_worker()
            if worker is None:
                break
            chunk = [self.pending.popleft()]
            if not self._alone(spec):
                size = min(self._chunk_size(spec), len(self.pending) // self.slots + 1)
                while self.pending and len(chunk) < size:
                    nxt = self.pending[0]
                    if nxt.kind is not TaskKind.PYTHON or self._alone(nxt) \
                            or _kind_of(nxt) != _kind_of(spec) or self._cost(nxt) != self._cost(spec):
                        break
                    chunk.append(self.pending.popleft())
            self._send(worker, chunk)
        self._hand_over()

    def _hand_over(self) -> None:
        """With every slot taken, give the spawner the next 1-core commands to start the moment
        a running command ends, in chains behind the running ones: the slot passes from one to
        the next without a round trip through the engine (a run of short commands is bound by
        that latency). At most QUEUED_PER_SLOT per slot wait there, and only commands of a
        name seen to take under HAND_OVER_SECONDS: longer ones gain nothing from it, and a
        pause would let them run."""
        if self._spawner is None or not self.pending or self.pending[0].kind is not TaskKind.SHELL:
            return  # (every poll of a run of Python tasks comes here)
        room = QUEUED_PER_SLOT * self.slots - sum(sh.queued for sh in self.shells.values())
        # (not behind a cancelled one: its drop may reach the spawner first)
        tails = [i for i in self.shells if i not in self._followers and i not in self.cancelled]
        while room > 0 and tails and self.pending:
            spec = self.pending[0]
            seen = self._durations.get(_kind_of(spec))
            if spec.kind is not TaskKind.SHELL or self._cost(spec) != 1 or seen is None \
                    or seen >= HAND_OVER_SECONDS:
                return
            self.pending.popleft()
            lead = tails.pop(0)
            if self._start_shell(spec, after=lead):
                tails.append(spec.attempt_id)
                room -= 1
            else:
                tails.insert(0, lead)

    def _chunk_size(self, spec: TaskSpec) -> int:
        """How many attempts like ``spec`` to send a worker at once: about CHUNK_SECONDS of
        work by the durations seen so far, and one at a time until one has been seen. Chunks
        save a round trip per tiny task; a sent chunk cannot be withdrawn (pause), so longer
        tasks travel alone."""
        seen = self._durations.get(_kind_of(spec))
        if seen is None:
            return 1
        return max(1, min(CHUNK, int(CHUNK_SECONDS / max(seen, 1e-6))))

    def _observe(self, spec: TaskSpec, res: AttemptResult) -> None:
        started, ended = res.metrics.get("started"), res.metrics.get("ended")
        if isinstance(started, float) and isinstance(ended, float):
            self._took(spec, ended - started)

    def _took(self, spec: TaskSpec, seconds: float) -> None:
        key = _kind_of(spec)
        took = max(0.0, seconds)
        before = self._durations.get(key)
        self._durations[key] = took if before is None else 0.8 * before + 0.2 * took

    def _alone(self, spec: TaskSpec) -> bool:
        """Sent to a worker by itself: it has limits to enforce, or it was in a chunk whose
        worker died."""
        return _limited(spec) or spec.attempt_id in self._solo

    def _idle_worker(self) -> _Worker | None:
        for w in self.workers:
            if not w.running:
                return w
        if len(self.workers) < self.n_workers:
            return self._new_worker()
        return None

    def _new_worker(self) -> _Worker:
        parent, child = self._mp.Pipe()
        # the fork server was started with the environment of its time; give the worker today's
        proc = self._mp.Process(target=pool_main, args=(child, str(self.ctx.cwd), self._base_env),
                                daemon=True)
        with _main_not_reimported():
            proc.start()
        child.close()
        w = _Worker(proc, parent)
        self.workers.append(w)
        return w

    def _send(self, worker: _Worker, chunk: list[TaskSpec]) -> None:
        worker.running = {s.attempt_id: s for s in chunk}
        worker.limited = any(_limited(s) for s in chunk)
        worker.cost = max(self._cost(s) for s in chunk)
        worker.since = time.time()
        # the worker writes each attempt's output straight into its attempt directory
        worker.conn.send([(s.attempt_id, s.payload, s.env, str(s.workdir)) for s in chunk])
        if self._listener is not None:
            # the first attempt of the chunk starts now; the others wait their turn in the
            # worker (tiny tasks: a chunk takes about CHUNK_SECONDS) and are seen started when
            # their results come, with their exact start times
            self._listener.started(chunk[0].attempt_id, worker.since, hostname())

    def _start_shell(self, spec: TaskSpec, after: str | None = None) -> bool:
        """Have the spawner start ``spec`` (``after``: when that command ends); False if it
        failed before (its output folders could not be made)."""
        payload = pickle.loads(spec.payload)
        assert isinstance(payload, ShellPayload)
        try:
            os.mkdir(spec.workdir)
        except FileNotFoundError:
            spec.workdir.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            pass
        problem = make_output_dirs(payload.outputs, spec.cwd)
        if problem:
            self.done.append(Completion(spec.attempt_id, Outcome.FAILED, error=problem))
            return False
        started = time.time()
        if self._spawner is None:
            self._spawner = Spawner()
        self._spawner.start(
            spec.attempt_id, shell_argv(payload.command), str(spec.cwd),
            str(spec.workdir / STDOUT_FILE), str(spec.workdir / STDERR_FILE),
            {**self._base_env, **spec.env}, after=after,
        )
        self.shells[spec.attempt_id] = _Shell(spec, None, started, queued=after is not None)
        if after is not None:
            self._followers[after] = spec.attempt_id
        elif self._listener is not None:
            self._listener.started(spec.attempt_id, started, hostname())
        return True

    def _unlink(self, gone: str) -> None:
        """A queued command was dropped: what waited for it waits for its lead (as the spawner
        does)."""
        lead = next(k for k, v in self._followers.items() if v == gone)
        del self._followers[lead]
        nxt = self._followers.pop(gone, None)
        if nxt is not None:
            self._followers[lead] = nxt

    def _promote(self, lead: str) -> None:
        """``lead`` ended (or could not start): the spawner starts the command queued behind
        it now, in its slot."""
        follower = self._followers.pop(lead, None)
        sh = self.shells.get(follower) if follower is not None else None
        if sh is None:
            return
        sh.queued, sh.started = False, time.time()
        if self._listener is not None:
            self._listener.started(sh.spec.attempt_id, sh.started, hostname())

    # ------------------------------------------------------------------ collection

    def _collect_workers(self) -> None:
        for w in list(self.workers):
            while w.running and w.conn.poll():
                try:
                    batch: list[tuple[str, AttemptResult]] = w.conn.recv()
                except (EOFError, OSError):
                    break
                for attempt_id, res in batch:
                    w.kept.update(res.metrics.get("kept") or ())
                    spec = w.running.pop(attempt_id, None)
                    if spec is not None:
                        self._observe(spec, res)
                    self.done.append(_completion(attempt_id, res))
            if w.running and not w.proc.is_alive():
                code = w.proc.exitcode
                reason = f"the worker process died (exit code {code})"
                if code is not None and code < 0:
                    reason = f"the worker process was killed by signal {-code}"
                if len(w.running) == 1:
                    self._kill_worker(w, Outcome.FAILED, reason, set(w.running))
                else:
                    # results of tiny tasks are batched, so which attempt of the chunk killed
                    # the worker is unknown: run them all again, one per worker, to find it
                    self._solo.update(w.running)
                    self._kill_worker(w, Outcome.FAILED, reason, set())

    def _kill_worker(self, w: _Worker, outcome: Outcome, reason: str, ids: set[str]) -> None:
        """Stop a worker; attempts in ``ids`` end with ``outcome``. Its other attempts (the one
        it was running, and those queued behind it) go back to the front of the queue."""
        if w.proc.is_alive():
            kill_tree(w.proc.pid, w.kept)  # with what its task started
            w.proc.join(timeout=5)
        # the first attempt of the chunk was running since the chunk was sent (limited attempts
        # travel alone); record what is known of it rather than leaving its metrics empty
        running = next(iter(w.running), None)
        if running is not None:  # what it wrote so far is its log
            workdir = w.running[running].workdir
            salvage(workdir.parent, w.proc.pid, workdir)
        metrics = Metrics(started=w.since, ended=time.time(), exit_code=w.proc.exitcode,
                          host=hostname())
        requeue = []
        for attempt_id, spec in w.running.items():
            if attempt_id in ids:
                self.done.append(Completion(attempt_id, outcome,
                                            metrics if attempt_id == running else Metrics(),
                                            error=reason))
            else:
                requeue.append(spec)
        self.pending.extendleft(reversed(requeue))
        w.conn.close()
        self.workers.remove(w)

    def _collect_shells(self) -> None:
        if self._spawner is None:
            return
        for msg in self._spawner.collect():  # in the spawner's order (see its protocol)
            ident = msg["id"]
            sh = self.shells.get(ident)
            if sh is None:
                continue
            if "dropped" in msg:
                if msg["dropped"]:  # a queued command cancelled before it started
                    del self.shells[ident]
                    self._unlink(ident)
                    self.done.append(Completion(ident, Outcome.CANCELLED, error="cancelled"))
            elif "pid" in msg:
                sh.pid = int(msg["pid"])
                if ident in self.cancelled:
                    kill_group(sh.pid)
            elif "error" in msg:
                del self.shells[ident]
                self._promote(ident)
                self.done.append(Completion(ident, Outcome.FAILED,
                                            error=f"the command could not start: {msg['error']}"))
            else:
                del self.shells[ident]
                self._promote(ident)
                self._took(sh.spec, time.time() - sh.started)
                self.done.append(self._shell_completion(sh, msg))

    def _shell_completion(self, sh: _Shell, usage: dict[str, Any]) -> Completion:
        code = int(usage["status"])
        metrics = Metrics(
            started=sh.started, ended=time.time(), cpu_user=usage["utime"],
            cpu_system=usage["stime"], peak_rss=usage["maxrss"], exit_code=code,
            host=hostname(),
        )
        attempt_id = sh.spec.attempt_id
        limit = sh.limit_outcome
        if attempt_id in self.cancelled:
            return Completion(attempt_id, Outcome.CANCELLED, metrics, error="cancelled")
        if limit is not None:
            return Completion(attempt_id, limit[0], metrics, error=limit[1])
        payload = pickle.loads(sh.spec.payload)
        outcome, error = shell_outcome(code, payload.outputs, sh.spec.cwd)
        if error and outcome != "succeeded":
            tail = _tail(sh.spec.workdir / STDERR_FILE)
            error = f"{error}\n{tail}" if tail else error
        return Completion(attempt_id, Outcome(outcome), metrics, error=error)

    # ------------------------------------------------------------------ limits

    def _enforce_limits(self) -> None:
        now = time.time()
        if now - self._last_limit_check < LIMIT_CHECK_INTERVAL:
            return
        self._last_limit_check = now
        for sh in list(self.shells.values()):
            if sh.pid is None:
                continue
            verdict = _over_limit(sh.spec, sh.started, sh.pid, now)
            if verdict is not None:
                sh.limit_outcome = verdict
                kill_group(sh.pid)
        for w in list(self.workers):
            if not (w.limited and len(w.running) == 1):
                continue
            (spec,) = w.running.values()
            verdict = _over_limit(spec, w.since, w.proc.pid, now)
            if verdict is not None:
                self._kill_worker(w, verdict[0], verdict[1], set(w.running))


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start a worker without multiprocessing re-running the parent's ``__main__`` in it.

    A forkserver or spawn child normally imports the main script again (as ``__mp_main__``) so
    that objects pickled by reference to it can be found. Tasks are pickled with cloudpickle,
    which sends functions and classes of ``__main__`` by value, so the re-import is pure cost:
    for the ``corral`` command it imported the whole command line, SQLAlchemy and rich, in every
    worker (about 0.7 s before the first task). A main module whose spec is named ``__main__``
    is not re-imported (``multiprocessing.spawn._fixup_main_from_name``).
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = getattr(main, "__spec__", None)
    main.__spec__ = ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = saved


def _kind_of(spec: TaskSpec) -> str:
    return spec.group


def _forget_inherited_forkserver() -> None:
    """In a child forked from a process that had started the fork server: forget it. It is
    the parent's child, not ours, so multiprocessing's ``ensure_running`` would ``waitpid``
    on it and fail with ChildProcessError (a program that runs a pipeline, forks, and runs
    one again in the child); the child starts a fork server of its own."""
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver  # type: ignore[attr-defined]  # no public way to reset it
    if getattr(server, "_forkserver_pid", None) is not None:
        server._forkserver_pid = None
        server._forkserver_address = None
        server._forkserver_alive_fd = None


os.register_at_fork(after_in_child=_forget_inherited_forkserver)


def _start_forkserver(preload: Sequence[str]) -> None:
    """Start (once per process) the fork server the Python workers are forked from, preloading
    the worker module and the pipeline's imports. Does not wait for the preloading."""
    from multiprocessing import forkserver

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["corral.worker.pool", *sorted(preload)])
    with _sigint_ignored_by_children():
        forkserver.ensure_running()


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Processes started in the block begin with SIGINT ignored (an ignored signal stays so
    across exec, and Python then keeps it so). The fork server imports the preloaded modules
    (numpy...) before it ignores SIGINT itself: a Ctrl-C in that window printed its
    KeyboardInterrupt traceback over the terminal. Meanwhile SIGINT is blocked here, so a
    Ctrl-C meant for the engine stays pending and reaches its handler afterwards. Handlers can
    only be changed in the main thread; elsewhere (a run started with corral.start) nothing
    changes."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is None:  # None: a handler not set from Python
        yield
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _limited(spec: TaskSpec) -> bool:
    r = spec.resources
    return r.walltime_seconds is not None or r.memory_bytes is not None


def _over_limit(
    spec: TaskSpec, started: float, pid: int, now: float
) -> tuple[Outcome, str] | None:
    r = spec.resources
    wt = r.walltime_seconds
    if wt is not None and now - started > wt:
        return Outcome.TIMEOUT, f"killed after exceeding its walltime of {wt} s"
    mem = r.memory_bytes
    if mem is not None:
        try:
            rss = tree_rss(psutil.Process(pid))
        except psutil.Error:
            return None
        if rss > mem:
            return Outcome.OUT_OF_MEMORY, over_memory_request(rss, mem)
    return None




def _tail(path: Any, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _completion(attempt_id: str, res: AttemptResult) -> Completion:
    m = res.metrics
    metrics = Metrics(
        started=m.get("started"), ended=m.get("ended"), cpu_user=m.get("cpu_user"),
        cpu_system=m.get("cpu_system"), peak_rss=m.get("peak_rss"),
        read_bytes=m.get("read_bytes"), write_bytes=m.get("write_bytes"), host=m.get("host"),
        exit_code=0 if res.outcome == "succeeded" else 1,
    )
    return Completion(
        attempt_id, Outcome(res.outcome), metrics, res.result, res.error, res.stdout, res.stderr
    )
