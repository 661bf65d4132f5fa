"""``corral run --report-to URL --token T``: report a run's progress and per-task metrics to a
Corral gateway (``PUT /api/v1/reports/{run_id}``), so pipelines run anywhere show up there.

Standard library HTTP only (:mod:`urllib.request`). Reporting never fails or slows the run:
progress goes out from a background thread, at most every :data:`INTERVAL` seconds and only the
latest counts (throttled, coalesced); the final report (state, counts, per-task metrics in batches
of :data:`BATCH` tasks) is sent once the run has ended, each request within :data:`TIMEOUT`
seconds, stopping at the first error. A gateway that is down or refuses gets one warning line on
standard error; the run goes on.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from corral.errors import CorralError, UsageError
from corral.states import TERMINAL_RUN_STATES, RunState, TaskState

from .common import err_console

if TYPE_CHECKING:
    from corral.engine.progress import Progress
    from corral.store.store import Store

INTERVAL = 5.0
"""Seconds between two progress reports, at least."""
TIMEOUT = 5.0
"""Seconds one request may take."""
BATCH = 500
"""Tasks per request of the final report (the gateway takes up to 1,000)."""
TOKEN_ENV = "CORRAL_REPORT_TOKEN"


def check_target(url: str, token: str | None) -> str:
    """The gateway's base URL without a trailing slash; UsageError naming the fix otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--report-to {url!r} is not an http:// or https:// URL; give the gateway's address, "
                         "e.g. --report-to https://gateway.example.org")
    if not token:
        raise UsageError(f"--report-to needs a token: --token T, or set {TOKEN_ENV} (keeps it out of ps)")
    return url.rstrip("/")


def _utc(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


class Reporter:
    """Reports one run; see the module docstring. ``start`` when the engine is ready, ``progress``
    as the engine's ``on_progress``, ``finish`` once the run has ended."""

    def __init__(self, url: str, token: str, project: str | None = None, interval: float = INTERVAL) -> None:
        self.url, self.token, self.project, self.interval = url, token, project, interval
        self.run_id: str | None = None
        self._base: dict[str, Any] = {}
        self._counts: dict[str, int] = {}
        self._state = RunState.RUNNING
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._loop, name="corral-report-to", daemon=True)

    def start(self, run_id: str, pipeline: str, executor: str) -> None:
        """The run has an id: the background thread reports it at the engine's first progress
        callback (which comes at once, with the tasks counted)."""
        self.run_id = run_id
        self._base = {"pipeline": pipeline[:200], "executor": executor[:100], "project": self.project,
                      "started": datetime.now(UTC).isoformat()}
        self._thread.start()

    def progress(self, p: Progress) -> None:
        """The engine's progress callback: note the counts; the thread sends them within ``interval``."""
        counts: Counter[str] = Counter()
        for by_state in p.groups.values():
            for state, n in by_state.items():
                counts[str(state)] += n
        with self._lock:
            self._counts = {k: v for k, v in counts.items() if v > 0}
            self._state = RunState.PAUSED if p.paused else RunState.RUNNING
        self._wake.set()

    def chain(self, shown: Callable[[Progress], None]) -> Callable[[Progress], None]:
        """A progress callback updating the display and this reporter."""

        def both(p: Progress) -> None:
            shown(p)
            self.progress(p)

        return both

    def finish(self, state: RunState, store: Store | None = None) -> None:
        """The run ended in ``state``: the final report, with per-task metrics read from ``store``."""
        if self.run_id is None:
            return
        self._stop.set()
        self._wake.set()
        # not waiting for a progress report still under way: the gateway ignores a progress
        # report that arrives after the final one (an ended run stays ended)
        self._thread.join(timeout=0.2)
        tasks: list[dict[str, Any]] = []
        if store is not None:
            tasks = self._task_metrics(store)
        counts = dict(Counter(t["state"] for t in tasks)) if tasks else self._counts
        final = {"state": state.value, "counts": counts,
                 "ended": datetime.now(UTC).isoformat() if state in TERMINAL_RUN_STATES else None}
        batches = [tasks[i:i + BATCH] for i in range(0, len(tasks), BATCH)] or [[]]
        for batch in batches:
            if not self._send({**self._base, **final, "tasks": batch}):
                return

    def _task_metrics(self, store: Store) -> list[dict[str, Any]]:
        from corral.report.metrics import run_metrics

        assert self.run_id is not None
        try:
            metrics = run_metrics(store, self.run_id)
        except CorralError as exc:
            self._warn(f"cannot read the run's metrics ({exc})")
            return []
        out, seen = [], set()
        for t in metrics.tasks:
            name = t.name if t.name not in seen else f"{t.name}#{t.idx}"
            seen.add(name)
            last = t.last
            out.append({"name": name[:300], "state": TaskState(t.state).value, "attempts": t.attempts,
                        "wall": last.wall if last else None, "cpu": last.cpu if last else None,
                        "peak_memory": last.peak_rss if last else None,
                        "host": (last.host or None) if last else None, "exit_code": last.exit_code if last else None})
        return out

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            self._wake.clear()
            with self._lock:
                body = {**self._base, "state": self._state.value, "counts": dict(self._counts)}
            self._send(body)
            self._stop.wait(self.interval)

    def _send(self, body: dict[str, Any]) -> bool:
        """One PUT of ``body``; False (and one warning, the first time) if it did not go through."""
        assert self.run_id is not None
        url = f"{self.url}/api/v1/reports/{urllib.parse.quote(self.run_id, safe='')}"
        request = urllib.request.Request(  # the scheme was checked: http or https
            url, data=json.dumps(body).encode(), method="PUT",
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
            return True
        except urllib.error.HTTPError as exc:
            self._warn(f"the gateway refused the report ({exc.code}: {_detail(exc)})")
        except (OSError, ValueError) as exc:  # URLError, refused, timeout, reset
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            self._warn(f"the gateway does not answer ({reason})")
        return False

    def _warn(self, what: str) -> None:
        with self._lock:
            first, self._warned = not self._warned, True
        if first:
            err_console.print(f"[yellow]warning: not reporting to {escape(self.url)}: {escape(what)}; "
                              "the run goes on[/]", highlight=False)


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(exc.read() or b"{}").get("detail", exc.reason)
    except (OSError, ValueError, AttributeError):
        detail = exc.reason
    return " ".join(str(detail).split())[:200]
