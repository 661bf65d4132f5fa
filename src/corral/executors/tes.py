"""The ``tes`` executor: send a pipeline's tasks to a GA4GH TES 1.1 server by URL and token.

Each attempt becomes one TES task (``POST /tasks``) with one executor whose ``command`` is an
argument list, tagged ``corral_run=<run id>`` and ``corral_attempt=<attempt id>``; its TES id is
the attempt's native id. What runs:

- a **shell task**: ``env K=V ... bash -c '<cd> set -eo pipefail; <command>' corral-tes [CWD]``.
  The command line is the task's own (values already quoted by Corral); the working directory
  travels as a positional argument (``"$1"``), never pasted into the script. With
  ``shared_filesystem = false`` it runs wherever the server puts it, so a task that declares
  outputs or reads input files is refused (nothing could carry them);
- a **Python task**: ``python -m corral.worker ATTEMPT_DIR --cwd CWD`` (the worker writes
  ``exit.json`` and ``result.pkl`` in the attempt directory). This needs the server to see this
  machine's files at the same paths and ``python`` to import Corral: only with
  ``shared_filesystem = true``; otherwise the batch holding it is refused with one line before
  any of it is submitted.

The task's variables (``CORRAL_CORES``, thread counts ...) travel through ``env`` in the argument
list, not the TES ``env`` field (some servers, the Corral gateway among them, refuse it).

Polling is batched: one ``GET /tasks?view=MINIMAL&tag_key=corral_run&tag_value=<run>`` per
interval (pages followed until every attempt in flight is seen; back-off from 0.25 s to
``poll_interval``), never one request per task. A task found ended is read once with
``view=FULL`` for its exit code, standard output and error. TES states map onto outcomes:
QUEUED, INITIALIZING, RUNNING, PAUSED, CANCELING and UNKNOWN are in flight (RUNNING reports the
start); COMPLETE is SUCCEEDED (for a shell task with a shared file system: if its declared outputs
exist); EXECUTOR_ERROR is FAILED; SYSTEM_ERROR is NODE_FAILURE; CANCELED is CANCELLED;
PREEMPTED is PREEMPTED; a task the server no longer knows is LOST. Cancelling is TES's
``POST /tasks/{id}:cancel``; a task running past ``resources.walltime`` is cancelled that way,
and one ended at or past it is reported TIMEOUT. A creation the server refuses for now (429, 5xx,
no answer) is retried at each poll, up to ``server_timeout``. See docs/executors/tes.md.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import pickle
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from corral.errors import ConfigError, ExecutorError, ResourceError
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
from corral.resources import Resources, format_walltime
from corral.worker.execute import (
    PAYLOAD_FILE,
    RESULT_FILE,
    SHELL_PREAMBLE,
    ShellPayload,
    atomic_write,
    make_output_dirs,
    read_marker,
    shell_outcome,
)

log = logging.getLogger(__name__)

API_PATH = "/ga4gh/tes/v1"
RUN_TAG = "corral_run"
ATTEMPT_TAG = "corral_attempt"
PAGE_SIZE = 2048
"""The largest page TES 1.1 allows."""
MIN_INTERVAL = 0.25
LOG_TAIL_LINES = 20
"""Lines of a failed task's standard error kept in its error message."""
CD_SCRIPT = 'cd -- "$1" || exit 125\n'
"""Prefix of a shell task's script with a shared file system: the directory is ``$1``."""


class TesState(enum.StrEnum):
    """A TES 1.1 task state (``tesState``)."""

    UNKNOWN = "UNKNOWN"
    """The server does not say."""
    QUEUED = "QUEUED"
    """Waiting to be scheduled."""
    INITIALIZING = "INITIALIZING"
    """Being prepared (inputs, containers)."""
    RUNNING = "RUNNING"
    """Its executor is running."""
    PAUSED = "PAUSED"
    """Paused by the server; it will resume."""
    COMPLETE = "COMPLETE"
    """Ended, every executor exited 0."""
    EXECUTOR_ERROR = "EXECUTOR_ERROR"
    """Ended, an executor exited non-zero."""
    SYSTEM_ERROR = "SYSTEM_ERROR"
    """Ended by a failure of the server's system, not of the task."""
    CANCELED = "CANCELED"
    """Cancelled (by Corral or by someone else)."""
    CANCELING = "CANCELING"
    """Being cancelled."""
    PREEMPTED = "PREEMPTED"
    """Ended by the server to make room for other work."""


ENDED: dict[TesState, Outcome] = {
    TesState.COMPLETE: Outcome.SUCCEEDED,
    TesState.EXECUTOR_ERROR: Outcome.FAILED,
    TesState.SYSTEM_ERROR: Outcome.NODE_FAILURE,
    TesState.CANCELED: Outcome.CANCELLED,
    TesState.PREEMPTED: Outcome.PREEMPTED,
}
"""The terminal TES states and the outcome of each; every other state is in flight."""


# ---------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TesSettings:
    """Options of a ``tes`` executor profile."""

    url: str
    """The server, ``http(s)://host:port`` (``/ga4gh/tes/v1`` is added unless it ends so)."""
    token_env: str | None = None
    """Name of the environment variable holding the bearer token."""
    token_file: str | None = None
    """File holding the bearer token (``~`` expanded); neither: no token is sent."""
    poll_interval: float = 2.0
    """Longest interval between two list calls."""
    max_jobs: int = 100
    """TES tasks in flight at once."""
    shared_filesystem: bool = False
    """Whether the server's tasks see this machine's files at the same paths."""
    python: str = "python3"
    """Interpreter, on the server's side, that imports Corral (Python tasks; shared only)."""
    image: str = "ubuntu:24.04"
    """Container image of every task (the server must offer bash, and Corral for Python)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Extra tags of every task (e.g. ``project`` for the Corral gateway)."""
    timeout: float = 30.0
    """Seconds one HTTP request may take."""
    server_timeout: float = 300.0
    """A server unreachable this long has every attempt in flight reported ``LOST``."""


_NAMES = tuple(f.name for f in fields(TesSettings))


def _positive(name: str, value: Any, kind: type[int] | type[float]) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    if not ok or (kind is int and not isinstance(value, int)):
        what = "a positive integer" if kind is int else "a positive number"
        raise ConfigError(f"tes executor option {name}={value!r} must be {what}")
    return kind(value)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"tes executor option {name}={value!r} must be a non-empty string")
    return value


def api_url(url: Any) -> str:
    """The TES API base of a profile's ``url`` (one-line ConfigError if it is not http(s))."""
    text = _string("url", url).strip().rstrip("/")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"tes executor option url={url!r} must be http(s)://host[:port][/path], "
                          "e.g. https://tes.example.org")
    return text if text.endswith(API_PATH) else text + API_PATH


def parse_settings(options: Mapping[str, Any]) -> TesSettings:
    """Validate profile options into :class:`TesSettings` (unknown keys: ConfigError)."""
    if "token" in options:
        raise ConfigError("tes executor option token: never write the token in the configuration; "
                          "name an environment variable with token_env or a file with token_file")
    unknown = sorted(set(options) - set(_NAMES))
    if unknown:
        raise ConfigError(f"unknown tes executor option(s) {', '.join(unknown)}; "
                          f"valid options are {', '.join(_NAMES)}")
    if "url" not in options:
        raise ConfigError('the tes executor needs url = "https://tes.example.org"')
    values: dict[str, Any] = {"url": api_url(options["url"])}
    if "token_env" in options and "token_file" in options:
        raise ConfigError("tes executor options token_env and token_file are exclusive; keep one")
    for name in ("token_env", "token_file", "python", "image"):
        if name in options:
            values[name] = _string(name, options[name])
    for name in ("poll_interval", "timeout", "server_timeout"):
        if name in options:
            values[name] = _positive(name, options[name], float)
    if "max_jobs" in options:
        values["max_jobs"] = _positive("max_jobs", options["max_jobs"], int)
    if "shared_filesystem" in options:
        if not isinstance(options["shared_filesystem"], bool):
            raise ConfigError(f"tes executor option shared_filesystem={options['shared_filesystem']!r} "
                              "must be true or false")
        values["shared_filesystem"] = options["shared_filesystem"]
    if "tags" in options:
        tags = options["tags"]
        if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in tags.items()):
            raise ConfigError(f"tes executor option tags={tags!r} must be a table of strings")
        if {RUN_TAG, ATTEMPT_TAG} & set(tags):
            raise ConfigError(f"tes executor option tags: {RUN_TAG} and {ATTEMPT_TAG} are Corral's own")
        values["tags"] = dict(tags)
    return TesSettings(**values)


def read_token(settings: TesSettings) -> str | None:
    """The bearer token named by the profile (``None``: none configured)."""
    if settings.token_env is not None:
        token = os.environ.get(settings.token_env, "").strip()
        if not token:
            raise ConfigError(f"the environment variable {settings.token_env} (tes option token_env) is "
                              "not set or empty; export it with the TES server's token")
        return token
    if settings.token_file is not None:
        path = Path(settings.token_file).expanduser()
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the tes token_file {path}: {exc.strerror or exc}; "
                              "check the path and its permissions") from exc
        if not token:
            raise ConfigError(f"the tes token_file {path} is empty; write the TES server's token in it")
        return token
    return None


# ---------------------------------------------------------------------------------- HTTP


class TesRequestError(ExecutorError):
    """A TES request failed: ``status`` is the HTTP status (``None``: the server was not reached)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.transient = status is None or status >= 500 or status == 429


def _detail(body: bytes) -> str:
    """The one-line reason in an error response (``detail``/``message``/``msg``, or its text)."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("detail", "message", "msg", "error"):
            if isinstance(data.get(key), str):
                text = data[key]
                break
    lines = text.splitlines()
    return lines[0][:300] if lines else "no details"


class TesClient:
    """The few TES 1.1 calls the executor makes, over :mod:`urllib.request` (JSON in and out)."""

    def __init__(self, base: str, token: str | None, timeout: float) -> None:
        self.base = base
        self.timeout = timeout
        self._token = token

    def call(self, method: str, path: str, query: Mapping[str, Any] | None = None,
             body: Any = None) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        if self._token is not None:  # not sent again if the server redirects elsewhere
            request.add_unredirected_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise TesRequestError(f"{method} {path} answered HTTP {exc.code}: {_detail(exc.read())}",
                                  exc.code) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TesRequestError(f"cannot reach the TES server at {self.base}: {reason}", None) from exc
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise TesRequestError(f"{method} {path} answered something that is not JSON", 502) from exc

    def states(self, run_id: str, wanted: set[str]) -> tuple[dict[str, TesState], bool]:
        """States of this run's tasks: one MINIMAL list call, then further pages only while some
        of ``wanted`` are unseen. Also says whether every page was read."""
        found: dict[str, TesState] = {}
        token: str | None = None
        while True:
            query: dict[str, Any] = {"view": "MINIMAL", "tag_key": RUN_TAG, "tag_value": run_id,
                                     "page_size": PAGE_SIZE}
            if token:
                query["page_token"] = token
            page = self.call("GET", "/tasks", query)
            for task in page.get("tasks") or []:
                found[str(task.get("id"))] = _state(task.get("state"))
            token = page.get("next_page_token") or None
            if token is None:
                return found, True
            if wanted <= set(found):
                return found, False

    def full(self, task_id: str) -> dict[str, Any]:
        task = self.call("GET", f"/tasks/{urllib.parse.quote(task_id, safe='')}", {"view": "FULL"})
        return task if isinstance(task, dict) else {}

    def cancel(self, task_id: str) -> None:
        self.call("POST", f"/tasks/{urllib.parse.quote(task_id, safe='')}:cancel", body={})


def _state(value: Any) -> TesState:
    try:
        return TesState(str(value))
    except ValueError:
        return TesState.UNKNOWN


# ---------------------------------------------------------------------------------- tasks


def shell_command(command: str, env: Mapping[str, str], cwd: Path | None) -> list[str]:
    """The TES command of a shell task: an argument list; ``cwd`` (shared file system) is
    ``$1`` of the script, the command line the task's own."""
    script = (CD_SCRIPT if cwd is not None else "") + SHELL_PREAMBLE + command
    tail = [str(cwd)] if cwd is not None else []
    return ["env", *(f"{k}={v}" for k, v in sorted(env.items())), "bash", "-c", script, "corral-tes", *tail]


def worker_command(python: str, env: Mapping[str, str], workdir: Path, cwd: Path) -> list[str]:
    """The TES command of a Python task: Corral's worker on the shared attempt directory."""
    return ["env", *(f"{k}={v}" for k, v in sorted(env.items())), python, "-m", "corral.worker",
            str(workdir), "--cwd", str(cwd)]


def task_body(spec: TaskSpec, command: list[str], settings: TesSettings) -> dict[str, Any]:
    """The ``tesTask`` of an attempt."""
    res = spec.resources
    resources: dict[str, Any] = {"cpu_cores": res.cores}
    if res.memory_bytes is not None:
        resources["ram_gb"] = round(res.memory_bytes / 2**30, 3)
    if res.walltime_seconds is not None:  # the Corral gateway's parameter; others may ignore it
        resources["backend_parameters"] = {"walltime_hours": f"{res.walltime_seconds / 3600:.4f}"}
    return {
        "name": spec.name,
        "description": f"Corral attempt {spec.attempt_id}",
        "executors": [{"image": settings.image, "command": command}],
        "resources": resources,
        "tags": {**settings.tags, RUN_TAG: spec.run_id, ATTEMPT_TAG: spec.attempt_id},
    }


@dataclass
class _Attempt:
    attempt_id: str
    kind: TaskKind
    workdir: Path
    cwd: Path
    outputs: list[str]
    task_id: str = ""
    submitted: float | None = None
    started_reported: bool = False
    cancelled: bool = False
    deferred: bool = False
    """Its creation was refused for now (busy server): retried at each poll."""
    walltime: int | None = None
    """Seconds it may run (``resources.walltime``): enforced here, TES has no such field."""
    running_since: float | None = None
    """Monotonic time it was first seen RUNNING."""
    timed_out: bool = False


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _executor_log(task: Mapping[str, Any]) -> dict[str, Any]:
    """The last executor log of a FULL task (``{}`` if it has none)."""
    logs = task.get("logs") or []
    inner = (logs[-1].get("logs") or []) if logs and isinstance(logs[-1], dict) else []
    return inner[-1] if inner and isinstance(inner[-1], dict) else {}


def _metrics(att: _Attempt, task: Mapping[str, Any]) -> Metrics:
    exe = _executor_log(task)
    code = exe.get("exit_code")
    return Metrics(submitted=att.submitted, started=_time(exe.get("start_time")),
                   ended=_time(exe.get("end_time")) or time.time(),
                   exit_code=code if isinstance(code, int) else None, native_id=att.task_id)


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-LOG_TAIL_LINES:])


def completion_of(att: _Attempt, state: TesState, task: Mapping[str, Any], shared: bool) -> Completion:
    """The completion of an ended attempt from its FULL task."""
    exe = _executor_log(task)
    stdout, stderr = exe.get("stdout") or None, exe.get("stderr") or None
    metrics = _metrics(att, task)
    outcome = ENDED[state]
    if att.kind is TaskKind.PYTHON and outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
        return _python_completion(att, metrics, stdout, stderr)
    error: str | None = None
    if outcome is Outcome.SUCCEEDED and shared:
        verdict, error = shell_outcome(0, att.outputs, att.cwd)
        outcome = Outcome(verdict)
    elif outcome is Outcome.FAILED:
        last = _tail(stderr or "").splitlines()
        code = metrics.exit_code
        status = f"the command exited with status {code}" if code is not None else "the command failed"
        error = "\n".join([_tail(stderr or ""), status + (f": {last[-1]}" if last else "")]).strip()
    elif outcome is not Outcome.SUCCEEDED:
        logs = task.get("logs") or [{}]
        system = [str(line) for line in (logs[-1].get("system_logs") or [])] if isinstance(logs[-1], dict) else []
        error = f"the TES server reported {state.value} for task {att.task_id}" + (
            f": {system[-1]}" if system else "")
    return Completion(att.attempt_id, outcome, metrics, None, error, stdout, stderr)


def _python_completion(att: _Attempt, metrics: Metrics, stdout: str | None,
                       stderr: str | None) -> Completion:
    marker = read_marker(att.workdir)
    if marker is None:
        error = (f"the worker left no exit marker in {att.workdir}; the TES server must see this directory "
                 "at the same path and its python must import corral")
        if stderr:
            error = _tail(stderr) + "\n" + error
        return Completion(att.attempt_id, Outcome.FAILED, metrics, None, error, stdout, stderr)
    measured = Metrics.from_dict(dict(marker.get("metrics") or {}))
    measured.submitted, measured.native_id = att.submitted, att.task_id
    measured.exit_code = measured.exit_code if measured.exit_code is not None else metrics.exit_code
    try:
        outcome = Outcome(str(marker.get("outcome")))
    except ValueError:
        outcome = Outcome.FAILED
    result_path = att.workdir / RESULT_FILE
    result = result_path.read_bytes() if result_path.exists() else None
    return Completion(att.attempt_id, outcome, measured, result, marker.get("error"), stdout, stderr)


# ---------------------------------------------------------------------------------- executor


class TesExecutor(Executor):
    """Runs attempts as tasks of a GA4GH TES 1.1 server. See the module docstring."""

    kind: ClassVar[str] = "tes"

    def __init__(self, settings: TesSettings, ctx: ExecutorContext) -> None:
        self.settings = settings
        self.ctx = ctx
        self._client: TesClient | None = None
        self._listener: Listener | None = None
        self._attempts: dict[str, _Attempt] = {}
        """Attempts in flight by TES task id."""
        self._pending: deque[tuple[_Attempt, dict[str, Any]]] = deque()
        """Attempts whose task is not created yet (the server was busy or unreachable)."""
        self._done: list[Completion] = []
        self._interval = MIN_INTERVAL
        self._next_check = 0.0
        self._unreachable_since: float | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], ctx: ExecutorContext) -> TesExecutor:
        return cls(parse_settings(options), ctx)

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {"kind": self.kind, "url": s.url, "shared_filesystem": s.shared_filesystem, "max_jobs": s.max_jobs}

    def client(self) -> TesClient:
        if self._client is None:
            self._client = TesClient(self.settings.url, read_token(self.settings), self.settings.timeout)
        return self._client

    def start(self, listener: Listener) -> None:
        """Check, before anything is submitted, that ``url`` is a TES server and that it accepts
        the token (one-line errors naming the fix)."""
        self._listener = listener
        client = self.client()
        try:
            client.call("GET", "/service-info")
        except TesRequestError as exc:
            if exc.status not in (401, 403):  # a server guarding even this: the token check says more
                raise ExecutorError(f"{exc}; check url in the tes executor profile "
                                    "(the server's address, optionally ending in /ga4gh/tes/v1)") from exc
        try:
            client.call("GET", "/tasks", {"view": "MINIMAL", "page_size": 1})
        except TesRequestError as exc:
            if exc.status in (401, 403):
                source = (f"the environment variable {self.settings.token_env}" if self.settings.token_env
                          else f"the file {self.settings.token_file}" if self.settings.token_file
                          else "token_env or token_file (none is set)")
                raise ConfigError(f"the TES server at {self.settings.url} refused the token "
                                  f"(HTTP {exc.status}); check {source}") from exc
            raise

    def validate(self, resources: Resources) -> None:
        if resources.nodes > 1:
            raise ResourceError(f"the tes executor runs each task on one node; nodes={resources.nodes} "
                                "needs a batch scheduler executor (slurm, sge, ...)")
        if resources.gpus:
            raise ResourceError(f"TES 1.1 has no way to request GPUs; gpus={resources.gpus} cannot be "
                                "honoured by the tes executor")

    def capacity(self) -> int | None:
        return max(0, self.settings.max_jobs - len(self._attempts) - len(self._pending))

    # ------------------------------------------------------------------ submit

    def _refusal(self, spec: TaskSpec, payload: Any) -> str | None:
        """Why an attempt cannot run on this server (``None``: it can)."""
        if self.settings.shared_filesystem:
            return None
        if spec.kind is TaskKind.PYTHON:
            return (f"task {spec.name} is a Python task: the tes executor runs Python tasks only with "
                    "shared_filesystem = true (the server sees this directory and its python imports "
                    "corral); set it, or run Python tasks on another executor")
        files = list(payload.outputs) + list(spec.inputs)
        if files:
            return (f"shell task {spec.name} reads or writes files ({', '.join(files[:3])}) that a TES "
                    "server without a shared file system cannot see; set shared_filesystem = true if it "
                    "sees this directory at the same path")
        return None

    def _prepare(self, spec: TaskSpec) -> tuple[_Attempt, list[str]]:
        payload = pickle.loads(spec.payload)
        refusal = self._refusal(spec, payload)
        if refusal is not None:
            raise ConfigError(refusal)
        shared = self.settings.shared_filesystem
        outputs = list(payload.outputs) if isinstance(payload, ShellPayload) else []
        att = _Attempt(spec.attempt_id, spec.kind, spec.workdir, spec.cwd, outputs,
                       walltime=spec.resources.walltime_seconds)
        if isinstance(payload, ShellPayload):
            command = shell_command(payload.command, spec.env, spec.cwd if shared else None)
        else:
            command = worker_command(self.settings.python, spec.env, spec.workdir, spec.cwd)
        return att, command

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        """Create one TES task per attempt. Every attempt of the batch is checked first: one
        this server cannot run refuses the whole batch (ConfigError) with nothing submitted."""
        prepared = [(spec, *self._prepare(spec)) for spec in batch]
        for spec, att, command in prepared:
            spec.workdir.mkdir(parents=True, exist_ok=True)
            atomic_write(spec.workdir / PAYLOAD_FILE, spec.payload)  # for re-attach (and the worker)
            problem = make_output_dirs(att.outputs, spec.cwd) if self.settings.shared_filesystem else None
            if problem:
                self._done.append(Completion(att.attempt_id, Outcome.FAILED, error=problem))
                continue
            self._pending.append((att, task_body(spec, command, self.settings)))
        self._create_pending()

    def _create_pending(self) -> None:
        """Create the queued TES tasks in order; a busy or unreachable server (429, 5xx, no
        answer) keeps the rest queued for the next poll, up to ``server_timeout``."""
        while self._pending:
            att, body = self._pending[0]
            att.submitted = att.submitted or time.time()
            try:
                answer = self.client().call("POST", "/tasks", body=body)
            except TesRequestError as exc:
                if exc.status == 401:
                    raise ConfigError(f"the TES server at {self.settings.url} refused the token: {exc}") from exc
                waited = time.time() - att.submitted
                if exc.transient and waited < self.settings.server_timeout:
                    if not att.deferred:
                        log.warning("tes executor: creating the task of %s failed (will retry): %s",
                                    att.attempt_id, exc)
                    att.deferred = True
                    return
                self._pending.popleft()
                self._done.append(Completion(att.attempt_id, Outcome.FAILED, Metrics(submitted=att.submitted),
                                             error=f"the TES server did not accept the task: {exc}"))
                continue
            self._pending.popleft()
            self._created(att, str(answer.get("id") or "") if isinstance(answer, dict) else "")

    def _created(self, att: _Attempt, task_id: str) -> None:
        if not task_id:
            self._done.append(Completion(att.attempt_id, Outcome.LOST, Metrics(submitted=att.submitted),
                                         error="the TES server answered a task creation without an id"))
            return
        att.task_id = task_id
        self._attempts[task_id] = att
        if self._listener is not None:
            self._listener.submitted(att.attempt_id, task_id)
        self._next_check = min(self._next_check, time.monotonic() + MIN_INTERVAL)
        self._interval = MIN_INTERVAL

    # ------------------------------------------------------------------ poll

    def poll(self, timeout: float) -> list[Completion]:
        if not self._done and (self._attempts or self._pending):
            wait = self._next_check - time.monotonic()
            if wait > timeout:
                time.sleep(max(0.0, timeout))
            else:
                time.sleep(max(0.0, wait))
                self._create_pending()
                changed = self._check() if self._attempts else False
                self._interval = MIN_INTERVAL if changed else min(self._interval * 2, self.settings.poll_interval)
                self._next_check = time.monotonic() + self._interval
        elif not self._done and timeout > 0:
            time.sleep(min(timeout, MIN_INTERVAL))
        done, self._done = self._done, []
        return done

    def _check(self) -> bool:
        """One batched status query; ended attempts become completions. Whether anything changed."""
        try:
            states, complete = self.client().states(self.ctx.run_id, set(self._attempts))
        except TesRequestError as exc:
            if exc.status in (401, 403):
                raise ExecutorError(f"the TES server at {self.settings.url} now refuses the token: {exc}") from exc
            self._unreachable(exc)
            return False
        self._unreachable_since = None
        changed = False
        for task_id, att in list(self._attempts.items()):
            state = states.get(task_id)
            if state is None and not complete:
                continue
            if state is None:
                state = self._vanished(att)
            if state is TesState.RUNNING:
                changed = self._running(att) or changed
            if state in ENDED:
                self._end(att, state)
                changed = True
        return changed

    def _vanished(self, att: _Attempt) -> TesState | None:
        """The state of a task missing from the listing (asked once; gone: reported LOST)."""
        try:
            return _state(self.client().full(att.task_id).get("state"))
        except TesRequestError as exc:
            if exc.status != 404:
                return None
        del self._attempts[att.task_id]
        self._done.append(Completion(att.attempt_id, Outcome.LOST,
                                     Metrics(submitted=att.submitted, native_id=att.task_id),
                                     error=f"TES task {att.task_id} is no longer known to the server"))
        return None

    def _running(self, att: _Attempt) -> bool:
        """Report the start of a running attempt; cancel one over its walltime. Whether it was news."""
        now = time.monotonic()
        news = not att.started_reported
        if news:
            self._report_start(att, time.time())
        if att.running_since is None:
            att.running_since = now
        if att.walltime is not None and not att.timed_out and now - att.running_since > att.walltime:
            att.timed_out = True
            self._cancel_task(att.task_id)
            news = True
        return news

    def _report_start(self, att: _Attempt, when: float) -> None:
        att.started_reported = True
        if self._listener is not None:
            self._listener.started(att.attempt_id, when, None)

    def _end(self, att: _Attempt, state: TesState) -> None:
        try:
            task = self.client().full(att.task_id)
        except TesRequestError as exc:
            log.warning("tes executor: reading task %s failed: %s", att.task_id, exc)
            task = {}
        comp = completion_of(att, state, task, self.settings.shared_filesystem)
        over = att.walltime is not None and (att.timed_out or (comp.metrics.wall or 0.0) >= att.walltime)
        if over and comp.outcome in (Outcome.FAILED, Outcome.CANCELLED) and att.walltime is not None:
            comp.outcome = Outcome.TIMEOUT
            comp.error = f"killed after exceeding its walltime of {format_walltime(att.walltime)}"
        if not att.started_reported and comp.metrics.started is not None:
            self._report_start(att, comp.metrics.started)
        del self._attempts[att.task_id]
        self._done.append(comp)

    def _unreachable(self, exc: TesRequestError) -> None:
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
        log.warning("tes executor: status query failed: %s", exc)
        if now - self._unreachable_since < self.settings.server_timeout:
            return
        for att in self._attempts.values():
            self._done.append(Completion(
                att.attempt_id, Outcome.LOST, Metrics(submitted=att.submitted, native_id=att.task_id),
                error=f"the TES server was unreachable for {self.settings.server_timeout:g} s: {exc}"))
        self._attempts.clear()

    # ------------------------------------------------------------------ cancel, re-attach

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        wanted = set(attempt_ids)
        for att, body in list(self._pending):
            if att.attempt_id in wanted:  # never created: nothing to ask the server
                self._pending.remove((att, body))
                self._done.append(Completion(att.attempt_id, Outcome.CANCELLED, Metrics(submitted=att.submitted),
                                             error="cancelled before its TES task was created"))
        for att in self._attempts.values():
            if att.attempt_id in wanted and not att.cancelled:
                att.cancelled = True
                self._cancel_task(att.task_id)
        self._next_check = time.monotonic()

    def _cancel_task(self, task_id: str) -> None:
        try:
            self.client().cancel(task_id)
        except TesRequestError as exc:
            log.warning("tes executor: cancelling task %s failed: %s", task_id, exc)

    def cancel_native(self, refs: Sequence[AttemptRef]) -> None:
        for ref in refs:
            self._cancel_task(ref.native_id)

    def reattach(self, refs: Sequence[AttemptRef]) -> list[str]:
        """Follow the TES tasks of a previous engine (their payload is read back from the attempt
        directory, written at submission)."""
        taken: list[str] = []
        for ref in refs:
            try:
                payload = pickle.loads((ref.workdir / PAYLOAD_FILE).read_bytes())
            except (OSError, pickle.UnpicklingError):
                continue
            shell = isinstance(payload, ShellPayload)
            outputs = list(payload.outputs) if shell else []
            att = _Attempt(ref.attempt_id, TaskKind.SHELL if shell else TaskKind.PYTHON, ref.workdir,
                           self.ctx.cwd, outputs, ref.native_id, ref.submitted)
            self._attempts[ref.native_id] = att
            taken.append(ref.attempt_id)
        return taken

    def shutdown(self) -> None:
        self._attempts.clear()
