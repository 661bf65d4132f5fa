"""The loop of a local pool worker process: receive chunks of payloads, run, send results.

A chunk is a list of ``(attempt_id, payload, variables, logdir)`` (``logdir`` may be left out
or None: the output then comes back in the result, see :mod:`corral.worker.output`). A large
return value is written to ``logdir/value.pkl`` and only its digest sent back
(:class:`corral.worker.execute.StoredResult`): it never travels through the engine. The
worker's descriptors 1 and 2 are the running attempt's logs; the processes an attempt started
are ended when it returns (:mod:`corral.worker.children`)."""

from __future__ import annotations

import os
import pickle
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from corral.worker.children import become_subreaper, keep_requested
from corral.worker.execute import (
    VALUE_FILE,
    AttemptResult,
    PythonPayload,
    run_python,
    thread_limits,
)
from corral.worker.output import AttemptOutput

FLUSH_AFTER = 0.02
"""Send results at once when a task took longer than this; batch tiny tasks."""


def pool_main(conn: Connection, cwd: str | None = None, env: dict[str, str] | None = None
              ) -> None:
    """A local pool worker: leads its own session (what its tasks start is killed with it and
    never gets the terminal's Ctrl-C), reaps their orphans, and serves chunks."""
    try:
        os.setsid()
    except OSError:
        pass  # leads a group already
    become_subreaper()
    worker_main(conn, cwd, env)


def worker_main(conn: Connection, cwd: str | None = None, env: dict[str, str] | None = None
                ) -> None:
    """Serve chunks until told to stop. ``env`` replaces the inherited environment: a fork
    server keeps the environment of the moment it started, which may be long ago in a process
    running several pipelines."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    if cwd:
        os.chdir(cwd)
    output = AttemptOutput()
    try:
        _serve(conn, AttemptEnv(), output)
    finally:
        output.close()


def _serve(conn: Connection, attempt_env: AttemptEnv, output: AttemptOutput) -> None:
    while True:
        try:
            chunk: list[tuple[Any, ...]] | None = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        out: list[tuple[str, AttemptResult]] = []
        last = time.monotonic()
        for attempt_id, data, variables, *rest in chunk:
            logdir: str | None = rest[0] if rest else None
            spill = os.path.join(logdir, VALUE_FILE) if logdir else None
            payload: PythonPayload = pickle.loads(data)
            attempt_env.apply(variables)
            logdir = output.begin(logdir)
            with thread_limits(variables.get("CORRAL_CORES")):
                res = run_python(payload, spill=spill)
            res.stdout, res.stderr = output.end(logdir, rotate=keep_requested())
            out.append((attempt_id, res))
            now = time.monotonic()
            if now - last > FLUSH_AFTER:
                if not _send(conn, out):
                    return
                out = []
                last = now
        if out and not _send(conn, out):
            return


class AttemptEnv:
    """The variables of the attempt running in this worker, in ``os.environ``.

    Consecutive attempts (the elements of a map) mostly carry the same variables, so only the
    differences are written (setting and restoring eight variables per attempt cost about
    25 µs, a tenth of a no-op task). Variables of the previous attempt that the next one does
    not set get back the value they had before any attempt."""

    def __init__(self) -> None:
        self.applied: set[str] = set()
        self.saved: dict[str, str | None] = {}
        self.last: dict[str, str] | None = None
        """The variables applied last."""

    def apply(self, env: dict[str, str]) -> None:
        environ = os.environ
        if env == self.last and all(environ.get(k) == v for k, v in env.items()):
            return  # (the elements of a map: a task that changed one of them changed it back)
        self.last = env
        for key in self.applied - env.keys():
            old = self.saved.pop(key, None)
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        for key, value in env.items():
            if key not in self.saved and key not in self.applied:
                self.saved[key] = os.environ.get(key)
            if os.environ.get(key) != value:
                os.environ[key] = value
        self.applied = set(env)


def _send(conn: Connection, results: list[tuple[str, AttemptResult]]) -> bool:
    """Send results; False if the engine is gone (killed): the worker then just ends, quietly."""
    try:
        conn.send(results)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return False
    return True
