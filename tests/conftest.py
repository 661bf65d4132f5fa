"""Checks shared by the whole suite."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

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
