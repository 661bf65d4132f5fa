"""The ``ssh`` executor: run attempts directly on a list of hosts reached over SSH.

Each host gets one :class:`~corral.transport.ssh.SSHTransport` (one connection, many channels)
and ``slots_per_host`` slots; an attempt takes ``resources.cores`` slots. For every attempt:

1. ``payload.pkl`` is written to the local attempt directory. Without a shared file system it is
   copied, with the task's input files (``TaskSpec.inputs``; unchanged ones only once per host),
   to ``<remote_workdir>/<run>/<attempt>`` and ``<remote_workdir>/<run>/cwd`` by SFTP. Input
   files and the large upstream values the payload names by reference go through the host's
   content cache (``<remote_workdir>/.corral-cache``, :mod:`corral.transport.transfer`): a
   content the host has is not sent again, in this run or a later one.
2. One remote command per host and submit starts the workers (``python -m corral.worker DIR
   --cwd CWD``) in new sessions, so each worker leads its own process group, and prints their
   pids; the native id is ``user@host:port:pid``. Starting is idempotent (a lock directory per
   attempt), so a command retried after a dropped connection never starts a worker twice.
3. One remote command per host and interval (back-off from 0.25 s to ``poll_interval``) reports,
   for all attempts on that host, which are alive and which wrote ``exit.json``.
4. Ended attempts have ``exit.json``, ``result.pkl``, logs and (after a success) declared shell
   outputs and the files a Python task returned (listed in its exit marker; one outside the
   remote task directory fails the attempt) copied back by SFTP (one batch per host), then become
   :class:`~corral.executors.base.Completion`. Their remote attempt directories are then removed
   per ``remote_cleanup`` (``succeeded``: kept after a failure; ``all``; ``none``), and at
   shutdown a host's ``<remote_workdir>/<run>`` too, with nothing in flight or kept there.

Cancelling sends SIGTERM to the worker's process group, then SIGKILL after ``kill_grace``
seconds. A watcher process on the host records how each worker ended. A worker gone without an
exit marker is reported ``CANCELLED`` if a signal of ``kill`` that Corral did not send ended it
(someone killed it on the host: the analogue of an external scancel/qdel), ``FAILED`` if another
signal did (a crash), and ``LOST`` with the tail of its log otherwise. ``resources.walltime``
is enforced here (TERM, then KILL; reported ``TIMEOUT``), and ``resources.memory`` by the
status command on the host (the worker's process tree RSS over the request: killed at once,
reported ``OUT_OF_MEMORY``); gpus and queue-like fields are ignored (no scheduler honours them).

The remote helper (:mod:`corral.transport.ssh_helper`) is a stdlib-only Python script sent with
``python -c``; requests and answers are JSON on stdin/stdout, so no path or value is ever
interpolated into a shell command line.
"""

from __future__ import annotations

import json
import logging
import pickle
import posixpath
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from corral.errors import CommandError, ConfigError, CorralError, ExecutorError, ResourceError
from corral.executors.base import (
    AttemptRef,
    Completion,
    Executor,
    ExecutorContext,
    Listener,
    Metrics,
    Outcome,
    TaskKind,
    TaskSpec,
)
from corral.executors.processes import over_memory_request
from corral.executors.ssh_settings import SSHExecutorSettings, parse_settings
from corral.hashing import file_digest
from corral.resources import Resources
from corral.transport import staging
from corral.transport.ssh import SSHTransport
from corral.transport.ssh import parse_transport_url as _parse_url
from corral.transport.ssh_helper import REMOTE_HELPER, parse_answer
from corral.transport.staging import StagedRun, input_pairs
from corral.transport.transfer import CACHE_DIR, Helper, cache_path, keep_remote
from corral.worker.execute import (
    MARKER_FILE,
    PAYLOAD_FILE,
    RESULT_FILE,
    STARTED_FILE,
    STDERR_FILE,
    STDOUT_FILE,
    ShellPayload,
    atomic_write,
    stored_result,
)

log = logging.getLogger(__name__)

WORKER_LOG = "worker.log"
"""Output of the worker process itself for shell tasks (their command writes stdout/stderr.log)."""
STAGED_PAYLOAD_FILE = "payload.staged.pkl"
"""The payload as staged when argument paths were moved to the remote task directory."""
LAUNCH_FILE = "ssh-launch.json"
"""Written to the local attempt dir after launch: what re-attach and ``corral cancel`` need."""
_FETCHED = (RESULT_FILE, MARKER_FILE, STARTED_FILE, STDOUT_FILE, STDERR_FILE, WORKER_LOG)
"""Files of a finished attempt copied back when the file system is not shared."""
MIN_INTERVAL = 0.25
_KILL_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
"""Signals of ``kill`` and friends: a worker ended by one that Corral did not send was cancelled."""


# ---------------------------------------------------------------------------------- state


@dataclass
class _Host:
    label: str
    transport: SSHTransport
    run: StagedRun
    """The run's directory on the host (non-shared mode): inputs there, attempts kept there."""
    slots: int = 1
    used: int = 0
    root: str = ""
    """Absolute remote work root (non-shared mode)."""
    down_until: float = 0.0
    unreachable_since: float | None = None

    @property
    def free(self) -> int:
        return max(0, self.slots - self.used)


@dataclass
class _Attempt:
    attempt_id: str
    local_dir: Path
    local_cwd: Path
    remote_dir: str
    remote_cwd: str
    log: str
    """Log file (in the attempt dir) of the worker process: tail shown when it is LOST."""
    slots: int = 1
    walltime: int | None = None
    memory: int | None = None
    """Memory request in bytes: the status command kills a process tree using more."""
    oom_rss: int | None = None
    outputs: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    host: _Host | None = None
    pid: int | None = None
    submitted: float | None = None
    launched_at: float | None = None
    """Local monotonic time of the launch (walltime is measured from it, not the remote clock)."""
    started_reported: bool = False
    stop_reason: Outcome | None = None
    stop_at: float | None = None
    killed: bool = False

    @property
    def native_id(self) -> str:
        assert self.host is not None
        return f"{self.host.label}:{self.pid}"


_End = Mapping[str, Any] | Completion
"""How an attempt ended: its exit marker, or the completion of one that left none."""


def split_native_id(native_id: str) -> tuple[str, int | None]:
    """``user@host:port:pid`` -> (``user@host:port``, pid)."""
    label, _, pid = native_id.rpartition(":")
    return label, int(pid) if pid.isdigit() else None


def worker_argv(python: str, remote_dir: str, remote_cwd: str) -> list[str]:
    return [python, "-m", "corral.worker", remote_dir, "--cwd", remote_cwd]


def completion_from_marker(att: _Attempt, marker: Mapping[str, Any]) -> Completion:
    """The completion of an attempt whose exit marker was read (result from the local dir)."""
    metrics = Metrics.from_dict(dict(marker.get("metrics") or {}))
    metrics.submitted = att.submitted
    metrics.native_id = att.native_id if att.host else None
    try:
        outcome = Outcome(str(marker.get("outcome")))
    except ValueError:
        outcome = Outcome.FAILED
    result = stored_result(att.local_dir / RESULT_FILE, marker)
    return Completion(att.attempt_id, outcome, metrics, result, marker.get("error"))


def _staged_payload_file(att: _Attempt, cache: str) -> tuple[Path, list[str]]:
    """The local file to copy as the attempt's remote ``payload.pkl``: ``payload.pkl`` itself,
    or ``payload.staged.pkl`` when argument paths had to be moved to the remote task directory
    or upstream values passed by reference name their copies in the host's content ``cache``
    (:func:`corral.transport.staging.staged_payload`); and the local files of those values."""
    local = att.local_dir / PAYLOAD_FILE
    if att.log == WORKER_LOG:  # a shell task: its command line was written for the remote side
        return local, []
    data = local.read_bytes()
    refs = [r for r in staging.value_refs(data) if Path(r).is_file()]
    values = {r: cache_path(cache, file_digest(r)) for r in refs}
    staged = staging.staged_payload(data, att.local_cwd, att.remote_cwd, values)
    if staged is data:
        return local, []
    moved = att.local_dir / STAGED_PAYLOAD_FILE
    atomic_write(moved, staged)
    return moved, refs


# ---------------------------------------------------------------------------------- executor


class SSHExecutor(Executor):
    """Runs attempts as background processes on SSH hosts. See the module docstring."""

    kind: ClassVar[str] = "ssh"

    def __init__(self, settings: SSHExecutorSettings, ctx: ExecutorContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self.reads_engine_files = settings.shared_filesystem
        # staged: the engine's value files named in a payload are sent through the host's
        # content cache (once per content), so values still go by reference
        self.stages_engine_files = not settings.shared_filesystem
        self._hosts: dict[str, _Host] = {}
        self._listener: Listener | None = None
        self._pending: deque[_Attempt] = deque()
        self._running: dict[str, _Attempt] = {}
        self._done: list[Completion] = []
        self._interval = MIN_INTERVAL
        self._next_check = 0.0
        self._started = False

    @classmethod
    def from_options(cls, options: dict[str, Any], ctx: ExecutorContext) -> SSHExecutor:
        return cls(parse_settings(options), ctx)

    # ------------------------------------------------------------------ hosts

    def _make_hosts(self) -> dict[str, _Host]:
        if self._hosts:
            return self._hosts
        s = self.settings
        defaults = {
            "identity_file": s.identity_file,
            "known_hosts": s.known_hosts,
            "connect_timeout": s.connect_timeout,
            "shared_filesystem": s.shared_filesystem,
        }
        hosts: dict[str, _Host] = {}
        for url in s.hosts:
            transport = SSHTransport(_parse_url(url, defaults))
            label = transport.settings.label
            if label in hosts:
                raise ConfigError(f"ssh executor host {label} is listed twice in hosts")
            run = StagedRun(transport, s.remote_cleanup, self._host_helper(label))
            hosts[label] = _Host(label, transport, run, slots=s.slots_per_host or 1)
        self._hosts = hosts
        return hosts

    def _host_helper(self, label: str) -> Helper:
        """The remote helper of the host ``label`` as :func:`corral.transport.transfer.send_once`
        calls it."""
        return lambda action, items: self._helper(self._hosts[label], action, items, timeout=300.0)

    def _helper(self, host: _Host, action: str, items: list[dict[str, Any]], timeout: float = 60.0) -> dict[str, Any]:
        """Run the remote helper on ``host`` for ``items``; one SSH command."""
        res = host.transport.run(
            [self.settings.python, "-c", REMOTE_HELPER, action],
            input=json.dumps(items),
            timeout=timeout,
        )
        try:
            return parse_answer(res.stdout)
        except ValueError as exc:
            raise CommandError(res.argv[:1] + [action], res.returncode, res.stdout, str(exc)) from exc

    def _probe(self, host: _Host) -> None:
        info = self._helper(host, "probe", [{"id": "probe", "root": self.settings.remote_workdir}])["probe"]
        if not info.get("corral"):
            raise ExecutorError(
                f"{self.settings.python} on {host.label} (Python {info.get('python')}) cannot "
                "import corral.worker; install corral there or set the ssh executor's python"
            )
        host.slots = self.settings.slots_per_host or int(info["cpus"])
        # resolved on the host: a worker's Path.cwd() has no symlinks, and returned paths are
        # matched against this root (a /scratch or /home behind a symlink is common)
        root = info.get("root") or self.settings.remote_workdir
        if root == "~" or root.startswith("~/"):
            root = str(info["home"]) + root[1:]
        elif not root.startswith("/"):
            root = f"{info['home']}/{root}"
        host.root = root.rstrip("/") or "/"
        host.run.cache = posixpath.join(host.root, CACHE_DIR)

    def start(self, listener: Listener) -> None:
        """Connect to every host and check its interpreter; unreachable hosts are left out."""
        self._listener = listener
        failures: list[str] = []
        for label, host in list(self._make_hosts().items()):
            try:
                self._probe(host)
            except CorralError as exc:
                failures.append(f"{label}: {exc}")
                log.warning("ssh executor: leaving out host %s: %s", label, exc)
                host.transport.close()
                del self._hosts[label]
        if not self._hosts:
            raise ExecutorError("no ssh host is usable: " + "; ".join(failures))
        self._started = True

    # ------------------------------------------------------------------ paths and validation

    def _run_dir(self, host: _Host) -> str:
        """``<remote_workdir>/<run id>`` on ``host`` (non-shared mode)."""
        return f"{host.root}/{self.ctx.run_id}"

    def _remote_paths(self, host: _Host, att_id: str, local: Path, cwd: Path) -> tuple[str, str]:
        """Attempt directory and task directory of an attempt on ``host``."""
        if self.settings.shared_filesystem:
            return str(local), str(cwd)
        host.run.used = True
        base = self._run_dir(host)
        return f"{base}/{att_id}", f"{base}/cwd"

    def validate(self, resources: Resources) -> None:
        if resources.nodes > 1:
            raise ResourceError(
                f"the ssh executor runs each task on one host; nodes={resources.nodes} "
                "needs a batch scheduler (slurm, pbs, ...)"
            )
        most = max((h.slots for h in self._hosts.values()), default=None)
        if self._started and most is not None and resources.cores > most:
            raise ResourceError(
                f"cores={resources.cores} is more than the {most} slots of the largest ssh "
                "host; lower cores or raise slots_per_host"
            )

    def capacity(self) -> int | None:
        free = sum(h.free for h in self._hosts.values()) - len(self._pending)
        if self.ctx.max_parallel > 0:
            free = min(free, self.ctx.max_parallel - len(self._pending) - len(self._running))
        return max(0, free)

    # ------------------------------------------------------------------ submit and launch

    def _prepare(self, spec: TaskSpec) -> _Attempt:
        spec.workdir.mkdir(parents=True, exist_ok=True)
        atomic_write(spec.workdir / PAYLOAD_FILE, spec.payload)
        payload = pickle.loads(spec.payload)
        outputs = list(payload.outputs) if isinstance(payload, ShellPayload) else []
        inputs = list(spec.inputs)
        if not self.settings.shared_filesystem:  # with the files upstream tasks returned
            inputs = list(dict.fromkeys(inputs + staging.argument_files(payload, spec.cwd)))
        shell = spec.kind == TaskKind.SHELL
        return _Attempt(
            attempt_id=spec.attempt_id,
            local_dir=spec.workdir,
            local_cwd=spec.cwd,
            remote_dir="",
            remote_cwd="",
            log=WORKER_LOG if shell else STDERR_FILE,
            slots=spec.resources.cores,
            walltime=spec.resources.walltime_seconds,
            memory=spec.resources.memory_bytes,
            outputs=outputs,
            inputs=inputs,
            env=dict(spec.env),
        )

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        if self._listener is None:
            raise ExecutorError("the ssh executor was not started; call start(listener) first")
        for spec in batch:
            self.validate(spec.resources)
        for spec in batch:
            self._pending.append(self._prepare(spec))
        self._launch_pending()
        self._interval = MIN_INTERVAL
        self._next_check = min(self._next_check, time.monotonic() + MIN_INTERVAL)

    def _pick_host(self, slots: int, now: float) -> _Host | None:
        up = [h for h in self._hosts.values() if h.down_until <= now and h.free >= slots]
        return max(up, key=lambda h: h.free, default=None)

    def _launch_pending(self) -> None:
        now = time.monotonic()
        by_host: dict[str, list[_Attempt]] = {}
        while self._pending:
            att = self._pending[0]
            host = self._pick_host(min(att.slots, max(h.slots for h in self._hosts.values())), now)
            if host is None:
                break
            self._pending.popleft()
            att.host = host
            host.used += att.slots
            att.remote_dir, att.remote_cwd = self._remote_paths(host, att.attempt_id, att.local_dir, att.local_cwd)
            by_host.setdefault(host.label, []).append(att)
        for label, atts in by_host.items():
            self._launch_on(self._hosts[label], atts)

    @staticmethod
    def _stage(host: _Host, atts: list[_Attempt]) -> None:
        """Copy the payloads, input files and upstream value files of ``atts`` to ``host``: the
        files through the host's content cache, each content sent once (see
        :mod:`corral.transport.transfer`), and input files not at all if they are in place
        already, unchanged, from an earlier copy or output."""
        payloads: list[tuple[str, str]] = []
        values: list[str] = []
        inputs: dict[str, str] = {}
        for att in atts:
            payload, refs = _staged_payload_file(att, host.run.cache)
            payloads.append((str(payload), f"{att.remote_dir}/{PAYLOAD_FILE}"))
            values += refs
            inputs.update(input_pairs(att.inputs, att.local_cwd, att.remote_cwd, att.attempt_id, host.run.sent))
        host.run.put(payloads, list(inputs.items()), list(dict.fromkeys(values)))

    def _launch_item(self, att: _Attempt) -> dict[str, Any]:
        d = att.remote_dir
        shell = att.log == WORKER_LOG
        return {
            "id": att.attempt_id,
            "dir": d,
            "cwd": att.remote_cwd,
            "argv": worker_argv(self.settings.python, d, att.remote_cwd),
            "env": att.env,
            "stdout": f"{d}/{WORKER_LOG if shell else STDOUT_FILE}",
            "stderr": f"{d}/{WORKER_LOG if shell else STDERR_FILE}",
        }

    def _launch_on(self, host: _Host, atts: list[_Attempt]) -> None:
        """Stage (unless shared) and start ``atts`` on ``host`` with one helper call."""
        try:
            if not self.settings.shared_filesystem:
                self._stage(host, atts)
            answer = self._helper(host, "launch", [self._launch_item(a) for a in atts])
        except CorralError as exc:
            host.down_until = time.monotonic() + 30.0
            for att in atts:
                self._fail_launch(att, f"could not start on {host.label}: {exc}")
            return
        for att in atts:
            rec = answer.get(att.attempt_id) or {"error": "no answer from the remote helper"}
            if "pid" not in rec:
                self._fail_launch(att, f"could not start on {host.label}: {rec.get('error')}")
                continue
            self._launched(att, int(rec["pid"]))

    def _launched(self, att: _Attempt, pid: int) -> None:
        assert att.host is not None and self._listener is not None
        att.pid = pid
        att.submitted = time.time()
        att.launched_at = time.monotonic()
        self._running[att.attempt_id] = att
        keys = ("pid", "remote_dir", "remote_cwd", "slots", "walltime", "memory", "log", "outputs")
        record = {"host": att.host.label, **{k: getattr(att, k) for k in keys}}
        record["submitted"] = att.submitted
        atomic_write(att.local_dir / LAUNCH_FILE, json.dumps(record).encode())
        self._listener.submitted(att.attempt_id, att.native_id)

    def _fail_launch(self, att: _Attempt, message: str) -> None:
        if att.host is not None:
            att.host.used -= att.slots
        log.warning("ssh executor: %s: %s", att.attempt_id, message)
        self._done.append(Completion(att.attempt_id, Outcome.NODE_FAILURE, error=message))

    # ------------------------------------------------------------------ polling

    def poll(self, timeout: float) -> list[Completion]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._launch_pending()
            if self._running and time.monotonic() >= self._next_check:
                changed = self._check_all()
                self._interval = MIN_INTERVAL if changed else min(self._interval * 1.5, self.settings.poll_interval)
                self._next_check = time.monotonic() + self._interval
            if self._done:
                done, self._done = self._done, []
                return done
            now = time.monotonic()
            if now >= deadline:
                return []
            wake = min(deadline, self._next_check) if self._running else deadline
            time.sleep(max(0.01, min(wake - now, self.settings.poll_interval)))

    def _check_all(self) -> bool:
        """One status command per host with running attempts; True if any attempt ended."""
        before = len(self._done)
        for host in self._hosts.values():
            atts = [a for a in self._running.values() if a.host is host]
            if atts:
                self._check_host(host, atts)
        return len(self._done) > before

    def _status(self, host: _Host, atts: Sequence[_Attempt]) -> dict[str, Any]:
        """Alive, exit marker, start record (and log tail if gone) of ``atts``: one command."""
        items = [{"id": a.attempt_id, "dir": a.remote_dir, "pid": a.pid, "log": a.log, "memory": a.memory}
                 for a in atts]
        return self._helper(host, "status", items)

    def _check_host(self, host: _Host, atts: list[_Attempt]) -> None:
        try:
            answer = self._status(host, atts)
        except CorralError as exc:
            self._unreachable(host, atts, exc)
            return
        host.unreachable_since = None
        ended: list[tuple[_Attempt, _End]] = []
        for att in atts:
            rec = answer.get(att.attempt_id)
            if rec is None:
                continue
            self._report_started(att, rec.get("started"))
            if rec.get("oom") and att.stop_reason is None:  # the helper killed it
                att.stop_reason, att.stop_at, att.killed = Outcome.OUT_OF_MEMORY, time.monotonic(), True
                att.oom_rss = int(rec["oom"])
            if rec.get("marker") is not None:
                ended.append((att, rec["marker"]))
            elif not rec.get("alive"):
                ended.append((att, self._vanished(att, str(rec.get("tail") or ""), rec.get("exit"))))
            else:
                self._enforce_stop(att)
        if ended:
            self._finish(host, ended)

    def _unreachable(self, host: _Host, atts: list[_Attempt], exc: CorralError) -> None:
        now = time.monotonic()
        host.unreachable_since = host.unreachable_since or now
        log.warning("ssh executor: status of %s failed: %s", host.label, exc)
        since = now - host.unreachable_since
        if since < self.settings.host_timeout:
            return
        for att in atts:  # nothing can be fetched: their remote directories stay
            why = f"host {host.label} unreachable for {since:.0f}s"
            self._complete(att, self._markerless(att, Outcome.NODE_FAILURE, why))

    def _report_started(self, att: _Attempt, started: Any) -> None:
        if att.started_reported or not isinstance(started, dict) or self._listener is None:
            return
        att.started_reported = True
        self._listener.started(att.attempt_id, float(started["started"]), started.get("host"))

    def _markerless(self, att: _Attempt, outcome: Outcome, error: str) -> Completion:
        """The completion of an attempt that left no exit marker."""
        metrics = Metrics(submitted=att.submitted, native_id=att.native_id if att.pid else None)
        metrics.host = att.host.label if att.host else None
        return Completion(att.attempt_id, outcome, metrics, error=error)

    def _vanished(self, att: _Attempt, tail: str, exit_record: Any = None) -> Completion:
        """The completion of an attempt whose worker is gone without an exit marker; the
        watcher's ``exit_record`` tells a signal (external kill: CANCELLED; crash: FAILED) from
        an exit (LOST)."""
        if att.stop_reason is Outcome.CANCELLED:
            return self._markerless(att, att.stop_reason, "cancelled")
        if att.stop_reason is Outcome.OUT_OF_MEMORY:
            return self._out_of_memory(att)
        if att.stop_reason is not None:
            why = f"killed after its walltime ({att.walltime}s)"
            return self._markerless(att, att.stop_reason, why)
        code = exit_record.get("returncode") if isinstance(exit_record, dict) else None
        last = "\n".join(tail.strip().splitlines()[-15:]) or "(empty)"
        if isinstance(code, int) and code < 0:
            return self._killed(att, -code, last)
        assert att.host is not None
        how = f"exited with status {code}" if isinstance(code, int) else "exited"
        error = (
            f"the worker (pid {att.pid}) on {att.host.label} {how} without writing an exit "
            f"marker: it was killed, or {self.settings.python} could not run corral.worker. "
            f"Last lines of {att.log}:\n{last}"
        )
        return self._markerless(att, Outcome.LOST, error)

    def _killed(self, att: _Attempt, signum: int, last: str) -> Completion:
        """A worker killed by a signal Corral did not send: by ``kill`` (SIGKILL, SIGTERM,
        SIGINT, SIGHUP), the analogue of an external scancel/qdel, CANCELLED (not retried); by a
        crash (SIGSEGV, SIGABRT, ...), FAILED."""
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        if signum in _KILL_SIGNALS:
            completion = self._markerless(att, Outcome.CANCELLED, (
                f"the worker {att.native_id} was killed by {name} from outside Corral (kill, or "
                "the host's out-of-memory killer); reported cancelled, like an external scancel "
                "or qdel, and not retried"))
        else:
            completion = self._markerless(att, Outcome.FAILED, (
                f"the worker {att.native_id} crashed, killed by {name}. Last lines of "
                f"{att.log}:\n{last}"))
        completion.metrics.exit_code = -signum
        return completion

    def _out_of_memory(self, att: _Attempt) -> Completion:
        rss, mem = att.oom_rss or 0, att.memory or 0
        completion = self._markerless(att, Outcome.OUT_OF_MEMORY, over_memory_request(rss, mem))
        completion.metrics.peak_rss = rss
        return completion

    def _enforce_stop(self, att: _Attempt) -> None:
        now = time.monotonic()
        if (
            att.stop_reason is None
            and att.walltime is not None
            and att.launched_at is not None
            and now - att.launched_at > att.walltime
        ):
            att.stop_reason, att.stop_at = Outcome.TIMEOUT, now
            self._signal([att], "SIGTERM")
        elif att.stop_at is not None and not att.killed and now - att.stop_at > self.settings.kill_grace:
            att.killed = True
            self._signal([att], "SIGKILL")

    def _finish(self, host: _Host, ended: list[tuple[_Attempt, _End]]) -> None:
        """Fetch results, logs and outputs of ended attempts (one SFTP batch), complete them and
        remove their remote attempt directories per ``remote_cleanup``."""
        if self.settings.shared_filesystem:
            for att, end in ended:
                self._complete(att, end if isinstance(end, Completion) else completion_from_marker(att, end))
            return
        try:
            got = self._fetch(host, ended)
        except CorralError as exc:
            log.warning("ssh executor: fetching results from %s failed: %s", host.label, exc)
            return  # the attempts stay in flight; the next check tries again
        done = [(att, self._fetched_completion(att, end, got)) for att, end in ended]
        self._keep_values(host, ended, got)
        host.run.remove([(a.remote_dir, c.outcome is Outcome.SUCCEEDED) for a, c in done])
        for att, completion in done:
            self._complete(att, completion)

    @staticmethod
    def _keep_values(host: _Host, ended: list[tuple[_Attempt, _End]], got: set[str]) -> None:
        """Keep the large results of ``ended`` (fetched back) in the host's content cache before
        their attempt directories go: a later task there that takes one as input needs nothing
        sent. A failure only costs that send."""
        files: list[tuple[str, str, int]] = []
        for att, end in ended:
            value = None if isinstance(end, Completion) else end.get("value")
            result = f"{att.remote_dir}/{RESULT_FILE}"
            if isinstance(value, dict) and result in got:
                files.append((result, str(value["digest"]), int(value["size"])))
        if not files or host.run.helper is None:
            return
        try:
            keep_remote(host.run.helper, host.run.cache, files)
        except CorralError as exc:
            log.warning("ssh executor: could not keep results in %s's cache: %s", host.label, exc)

    def _fetch(self, host: _Host, ended: list[tuple[_Attempt, _End]]) -> set[str]:
        """Copy back markers, results and logs of ``ended`` and the outputs of successful shell
        tasks; returns the remote paths that existed."""
        pairs: list[tuple[str, str]] = []
        outputs: list[tuple[str, str]] = []  # relative: later tasks on the host read them
        for att, end in ended:
            pairs.extend((f"{att.remote_dir}/{n}", str(att.local_dir / n)) for n in _FETCHED)
            if isinstance(end, Completion) or end.get("outcome") != Outcome.SUCCEEDED.value:
                continue
            for out in att.outputs:  # absolute outputs: fetched from the same path on the host
                pair = (posixpath.join(att.remote_cwd, out), str(att.local_cwd / out))
                (pairs if posixpath.isabs(out) else outputs).append(pair)
            outputs += staging.returned_pairs(end, att.remote_cwd, att.local_cwd)[0]  # a Python task's Paths
        return host.run.get(pairs, outputs)

    @staticmethod
    def _fetched_completion(att: _Attempt, end: _End, got: set[str]) -> Completion:
        """The completion of a fetched attempt; a Python task's success whose result did not
        come back cannot be trusted: it is LOST (retried), and its directory kept."""
        if isinstance(end, Completion):
            return end
        completion = completion_from_marker(att, end)
        result = f"{att.remote_dir}/{RESULT_FILE}"
        if completion.outcome is Outcome.SUCCEEDED and att.log != WORKER_LOG and result not in got:
            completion.outcome, completion.result = Outcome.LOST, None
            completion.error = f"the attempt succeeded, but its {result} could not be fetched"
        problem = staging.returned_problem(*staging.returned_pairs(end, att.remote_cwd, att.local_cwd), got)
        if completion.outcome is Outcome.SUCCEEDED and problem is not None:
            completion.outcome, completion.error = Outcome(problem[0]), problem[1]
            completion.result = None
        elif completion.outcome is Outcome.SUCCEEDED:
            completion.result = staging.localize_result(completion.result, end, att.remote_cwd,
                                                        att.local_cwd)
        return completion

    def _complete(self, att: _Attempt, completion: Completion) -> None:
        if self._running.pop(att.attempt_id, None) is None:
            return
        if att.host is not None:
            att.host.used -= att.slots
        self._done.append(completion)

    # ------------------------------------------------------------------ cancel

    def _signal(self, atts: Sequence[_Attempt], signame: str) -> None:
        by_host: dict[str, list[_Attempt]] = {}
        for att in atts:
            if att.host is not None and att.pid:
                by_host.setdefault(att.host.label, []).append(att)
        for label, group in by_host.items():
            items = [{"id": a.attempt_id, "dir": a.remote_dir, "pid": a.pid, "signal": signame} for a in group]
            try:
                self._helper(self._hosts[label], "signal", items)
            except CorralError as exc:
                log.warning("ssh executor: %s on %s failed: %s", signame, label, exc)

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        wanted = set(attempt_ids)
        for att in [a for a in self._pending if a.attempt_id in wanted]:
            self._pending.remove(att)
            self._done.append(Completion(att.attempt_id, Outcome.CANCELLED, error="cancelled"))
        now = time.monotonic()
        running = [self._running[i] for i in wanted if i in self._running]
        for att in running:
            if att.stop_reason is None:
                att.stop_reason, att.stop_at = Outcome.CANCELLED, now
        self._signal(running, "SIGTERM")
        self._next_check = min(self._next_check, now + MIN_INTERVAL)

    # ------------------------------------------------------------------ re-attach

    def _attempt_from_ref(self, ref: AttemptRef) -> _Attempt | None:
        label, pid = split_native_id(ref.native_id)
        host = self._make_hosts().get(label)
        if host is None or pid is None:
            return None
        try:
            record = json.loads((ref.workdir / LAUNCH_FILE).read_bytes())
        except (OSError, ValueError):
            record = {}
        remote_dir, remote_cwd = self._remote_paths(host, ref.attempt_id, ref.workdir, self.ctx.cwd)
        return _Attempt(
            attempt_id=ref.attempt_id,
            local_dir=ref.workdir,
            local_cwd=self.ctx.cwd,
            remote_dir=str(record.get("remote_dir") or remote_dir),
            remote_cwd=str(record.get("remote_cwd") or remote_cwd),
            log=str(record.get("log") or STDERR_FILE),
            slots=int(record.get("slots") or 1),
            walltime=record.get("walltime"),
            memory=record.get("memory"),
            outputs=list(record.get("outputs") or []),
            host=host,
            pid=pid,
            submitted=ref.submitted or record.get("submitted"),
            launched_at=time.monotonic(),
        )

    def reattach(self, refs: Sequence[AttemptRef]) -> list[str]:
        """Take over attempts whose worker is still alive or has written its exit marker."""
        atts = [a for a in (self._attempt_from_ref(r) for r in refs) if a is not None]
        taken: list[str] = []
        for host in self._hosts.values():
            mine = [a for a in atts if a.host is host]
            if not mine:
                continue
            try:
                answer = self._status(host, mine)
            except CorralError as exc:
                log.warning("ssh executor: cannot re-attach on %s: %s", host.label, exc)
                continue
            for att in mine:
                rec = answer.get(att.attempt_id) or {}
                if rec.get("alive") or rec.get("marker") is not None:
                    self._running[att.attempt_id] = att
                    host.used += att.slots
                    taken.append(att.attempt_id)
        self._next_check = 0.0
        return taken

    def cancel_native(self, refs: Sequence[AttemptRef]) -> None:
        """Kill the workers of a run whose engine is gone (process group, pid checked first)."""
        atts = [a for a in (self._attempt_from_ref(r) for r in refs) if a is not None]
        self._signal(atts, "SIGTERM")

    # ------------------------------------------------------------------ misc

    def shutdown(self) -> None:
        """Close the connections; remote workers keep running (re-attach can take them over).
        A host with nothing in flight has its staged run directory removed (unless
        ``remote_cleanup = "none"``) when no attempt directory was kept there."""
        busy = {a.host.label for a in self._running.values() if a.host is not None}
        for host in self._hosts.values():
            if host.label not in busy:
                host.run.finish(self._run_dir(host), allowed=("cwd",))
            host.transport.close()

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hosts": {h.label: h.slots for h in self._hosts.values()} or list(self.settings.hosts),
            "shared_filesystem": self.settings.shared_filesystem,
            "python": self.settings.python,
        }


__all__ = ["SSHExecutor", "SSHExecutorSettings", "parse_answer", "parse_settings", "split_native_id"]
