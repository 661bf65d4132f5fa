"""Checks shared by the whole suite."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from core.corehelp import pg_schema
from core.corehelp import pg_url as rig_pg_url

_WATCHED = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture(autouse=True)
def _signal_dispositions_unchanged(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test must leave the test process's SIGINT/SIGTERM handling as it found it: processes
    started later inherit an ignored signal, and then (for instance) `corral run` ignores
    Ctrl-C in a test that runs much later — a failure far from its cause."""
    before = {s: signal.getsignal(s) for s in _WATCHED}
    yield
    changed = [signal.Signals(s).name for s in _WATCHED if signal.getsignal(s) != before[s]]
    for s in _WATCHED:
        signal.signal(s, before[s])
    if changed:
        pytest.fail(f"{request.node.nodeid} changed the handling of {', '.join(changed)}; "
                    "restore it in the test", pytrace=False)


@contextmanager
def _served(app: Any) -> Iterator[str]:
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def serve() -> Callable[[Any], AbstractContextManager[str]]:
    """Serve an ASGI app (a gateway) with uvicorn on a free loopback port, for a real client:
    ``with serve(app) as url: ...``."""
    return _served


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL of the rig's PostgreSQL whose search_path is a new, empty schema (dropped
    afterwards), named after the test's package; skipped without CORRAL_TEST_PG_URL (source
    /run/corral-rig/env), failed instead with CORRAL_REQUIRE_CLUSTERS=1."""
    package = request.path.parent.name
    with pg_schema(rig_pg_url(), package[:12]) as url:
        yield url
