"""The loop of a local pool worker process: receive chunks of payloads, run, send results."""

from __future__ import annotations

import os
import pickle
import signal
import time
from multiprocessing.connection import Connection

from corral.worker.execute import AttemptResult, PythonPayload, attempt_environment, run_python

FLUSH_AFTER = 0.02
"""Send results at once when a task took longer than this; batch tiny tasks."""


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
    while True:
        try:
            chunk: list[tuple[str, bytes, dict[str, str]]] | None = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        out: list[tuple[str, AttemptResult]] = []
        last = time.monotonic()
        for attempt_id, data, env in chunk:
            payload: PythonPayload = pickle.loads(data)
            with attempt_environment(env):
                out.append((attempt_id, run_python(payload)))
            now = time.monotonic()
            if now - last > FLUSH_AFTER:
                if not _send(conn, out):
                    return
                out = []
                last = now
        if out and not _send(conn, out):
            return


def _send(conn: Connection, results: list[tuple[str, AttemptResult]]) -> bool:
    """Send results; False if the engine is gone (killed): the worker then just ends, quietly."""
    try:
        conn.send(results)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return False
    return True
