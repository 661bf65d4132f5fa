"""The engine of an interactive run: the graph grows while the run lives.

:class:`LiveEngine` is the pipeline engine with one more source of nodes: calls submitted from
other threads (:meth:`LiveEngine.offer`), admitted at the top of every loop iteration the way a
dynamic scatter adds its elements. Each call's :class:`concurrent.futures.Future` is resolved
when its node reaches a final state. The run ends when it is closed and nothing is left.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future as CFuture
from concurrent.futures import InvalidStateError
from typing import Any, NamedTuple

from corral.codehash import recorded_parts
from corral.engine.engine import FLUSH_INTERVAL, Engine
from corral.engine.gc_pause import collection_paused
from corral.engine.plan import key_nodes
from corral.errors import CorralError, TaskFailed
from corral.executors.base import Completion, Outcome
from corral.graph import Node
from corral.model import TaskDef
from corral.states import RunState, TaskState

IDLE_POLL = 0.05
"""Seconds the loop waits for a completion when it could hand nothing over."""
LINGER = 0.1
"""Seconds a cluster executor's ready calls wait after the latest ``submit`` for more: calls
submitted close together (a loop of ``submit``) are handed over as one batch, one array job."""
_LIVE = frozenset({TaskState.PENDING, TaskState.QUEUED, TaskState.RUNNING})
"""States in which a call's future is not resolved yet."""


class Call(NamedTuple):
    """One submitted call and the future its caller holds."""

    task: TaskDef[Any, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: CFuture[Any]


class RemoteError(TaskFailed):
    """A submitted call failed where it ran; :attr:`remote_traceback` is its traceback there."""

    def __init__(self, task: str, message: str, remote_traceback: str) -> None:
        super().__init__(task, message)
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        base = super().__str__()
        if not self.remote_traceback:
            return base
        return f"{base}\n\nRemote traceback:\n{self.remote_traceback.rstrip()}"


class LiveEngine(Engine):
    """An engine whose graph accepts new task nodes while it runs (see the module)."""

    def setup_live(self) -> None:
        self.inbox: queue.SimpleQueue[list[Call]] = queue.SimpleQueue()
        self.cancel_box: queue.SimpleQueue[CFuture[Any]] = queue.SimpleQueue()
        self.closing = threading.Event()
        self.wake = threading.Event()
        """Set by the other threads when they give the loop something to do (:meth:`_poll`)."""
        self.futures: dict[int, CFuture[Any]] = {}
        self.by_future: dict[int, int] = {}
        """id(future) -> node index, for cancellations by the caller."""
        self.tracebacks: dict[int, str] = {}
        self.user_cancelled: set[int] = set()
        self._counters: dict[str, int] = {}
        self.shapes: set[tuple[TaskDef[Any, Any], int, tuple[str, ...]]] = set()
        """Call shapes (task, positional count, keyword names) whose signature check passed."""
        self.last_offer = 0.0
        self.code_parts: dict[str, dict[str, str]] = {}
        self.linger = 0.0 if self.executor.kind == "local" else LINGER

    # ------------------------------------------------------------- from other threads

    def offer(self, calls: list[Call]) -> None:
        """Queue calls for the engine thread (one batch: admitted, and released, together).
        The caller passes each future's cancellation on with :meth:`cancelled`."""
        self.last_offer = time.monotonic()
        self.inbox.put(calls)
        if not self.wake.is_set():  # (set until the loop goes idle again)
            self.wake.set()

    def cancelled(self, fut: CFuture[Any]) -> None:
        """The caller cancelled the future of an offered call: its task ends cancelled (its
        job is cancelled), or it is never admitted."""
        self.cancel_box.put(fut)
        self.wake.set()

    def close(self) -> None:
        """No more calls: the run ends when the queued ones are done."""
        self.closing.set()
        self.wake.set()

    # ------------------------------------------------------------- the loop

    def run(self) -> RunState:
        with collection_paused():
            self.prepare()
        self._report()
        while True:
            # the collector is off while the loop works, on while it waits: each call makes a
            # node, a spec, rows, long-lived objects and no garbage cycles, and the collector
            # scanned the whole heap again and again (6 % of the loop's time, 10,000 calls)
            with collection_paused():
                if not self._step():
                    break
            done = self._poll(self._has_room())
            with collection_paused():
                for comp in done:
                    self._complete(comp)
                if self.rec.dirty and (not self.inflight or
                                       time.monotonic() - self.rec.last_flush > FLUSH_INTERVAL):
                    self.rec.flush(wait_rows=True)
                self._report()
        self.rec.flush()
        self._cancel_unadmitted()
        return self._final_state()

    def _step(self) -> bool:
        """Admit calls, obey control requests, hand ready calls over; False: the run ended."""
        self._admit()
        self._control()
        if self.cancelling and not self.inflight:
            return False
        if not self.paused and not self.cancelling and not self._lingering():
            self._release()
        return not self._finished()

    def _has_room(self) -> bool:
        """Ready calls could be handed over now (the loop must not wait for a completion)."""
        return bool(self.ready and not self.paused and self._room() > 0
                    and not self._lingering())

    def _poll(self, room: bool) -> list[Completion]:
        """The executor's completions. With nothing in flight the loop waits for a call (or
        a cancellation, or the close) instead of sleeping: a call submitted to an idle run
        is admitted at once, not after :data:`IDLE_POLL`. The collector is on while the loop
        waits (see :meth:`run`), not while completions keep coming."""
        with collection_paused():
            done = self.executor.poll(0.0)
        if done or room:
            return done
        if self.inflight:
            return self.executor.poll(IDLE_POLL)
        self.wake.clear()
        if self.inbox.empty() and self.cancel_box.empty() and not self.closing.is_set():
            self.wake.wait(IDLE_POLL)
        return self.executor.poll(0.0)

    def _lingering(self) -> bool:
        """Wait a moment for more calls before handing ready ones over (see :data:`LINGER`)."""
        return (self.linger > 0 and not self.closing.is_set()
                and time.monotonic() - self.last_offer < self.linger)

    def _finished(self) -> bool:
        return (self.closing.is_set() and self.inbox.empty() and not self.inflight
                and not self.ready and not self.paused)

    def _final_state(self) -> RunState:
        if self.user_cancelled and not self.errors and not self.cancelling:
            left = [i for i, s in enumerate(self.state)
                    if s not in (TaskState.SUCCEEDED, TaskState.CACHED, TaskState.CANCELLED)]
            if not left:
                return RunState.CANCELLED
        return super()._final_state()

    def _cancel_unadmitted(self) -> None:
        while not self.inbox.empty():
            for call in self.inbox.get():
                call.future.cancel()

    # ------------------------------------------------------------- admitting calls

    def _admit(self) -> None:
        while not self.cancel_box.empty():
            self._caller_cancelled(self.cancel_box.get())
        batches: list[Call] = []
        while not self.inbox.empty():
            batches.extend(self.inbox.get())
        calls = [c for c in batches if not c.future.cancelled()]
        if not calls:
            return
        if self.cancelling:
            for call in calls:
                call.future.cancel()
            return
        self._add_nodes(calls)

    def _add_nodes(self, calls: list[Call]) -> None:
        new: list[Node] = []
        counters, shapes, graph = self._counters, self.shapes, self.graph
        for call in calls:
            the_task = call.task
            base = the_task.name
            n = counters.get(base, 0)
            counters[base] = n + 1
            # the signature binds alike for calls passing as many arguments, by the same names
            shape = (the_task, len(call.args), tuple(call.kwargs))
            try:
                fut = the_task.add_call(graph, call.args, call.kwargs, f"{base}[{n}]",
                                        check=shape not in shapes)
            except CorralError as exc:
                _resolve(call.future, exc=exc)
                continue
            shapes.add(shape)
            new.append(fut.node)
            self.futures[fut.node.idx] = call.future
            self.by_future[id(call.future)] = fut.node.idx
        if not new:
            return
        self._grow(new)
        bad = self._key(new)
        self._persist_tasks(new, fresh=True)
        for idx, reason in bad.items():
            self._fail(idx, reason)
        good = [x for x in new if x.idx not in bad]
        self._record_code(good)
        self._resolve_cached([x.idx for x in good])
        for node in good:
            if self.state[node.idx] is TaskState.PENDING:
                self._make_ready(node.idx)

    def _key(self, new: list[Node]) -> dict[int, str]:
        """Keys the new nodes; those whose arguments cannot be hashed or pickled, with why
        (the calls are keyed together, one by one only when one of them is bad)."""
        try:
            key_nodes(self.plan, new, set())
            return {}
        except CorralError:
            pass
        bad: dict[int, str] = {}
        for node in new:
            try:
                key_nodes(self.plan, [node], set())
            except CorralError as exc:
                bad[node.idx] = str(exc)
        return bad

    def _record_code(self, new: list[Node]) -> None:
        """What the code keys of newly seen functions cover, in the run's options, for
        ``corral why`` (a pipeline run records them when it is created)."""
        if all(n.task is None or n.task.code in self.code_parts for n in new):
            return
        self.code_parts.update(recorded_parts(new))
        options = dict(self.store.get_run(self.run_id)["options"] or {})
        self.store.update_run(self.run_id, options={**options, "code_parts": self.code_parts})

    def _grow(self, new: list[Node]) -> None:
        """The engine's per-node lists, extended for ``new`` (no dependencies between calls)."""
        n = len(self.graph.nodes)
        extra = n - len(self.state)
        self.state += [TaskState.PENDING] * extra
        self.attempt_no += [0] * extra
        self.task_id += [0] * extra
        self.waiting += [0] * extra
        for node in new:
            self.progress.count(node.group or node.name, None, TaskState.PENDING)
            self.plan.add_node_children(node)
        self.progress.total = n

    def _caller_cancelled(self, fut: CFuture[Any]) -> None:
        idx = self.by_future.get(id(fut))
        if idx is None or self.state[idx] not in (TaskState.PENDING, TaskState.QUEUED,
                                                  TaskState.RUNNING):
            return
        self.user_cancelled.add(idx)
        if idx in self.ready:
            self.ready.remove(idx)
            self.set_state(idx, TaskState.CANCELLED, finished_at=time.time())
            return
        attempts = [a for a, i in self.inflight.items() if i == idx]
        if attempts:
            self.executor.cancel(attempts)

    # ------------------------------------------------------------- resolving futures

    def _complete(self, comp: Completion) -> None:
        idx = self.inflight.get(comp.attempt_id)
        if idx is not None and comp.error:
            self.tracebacks[idx] = comp.error
        if idx is not None and idx in self.user_cancelled \
                and comp.outcome is Outcome.CANCELLED:
            self.inflight.pop(comp.attempt_id)
            self.set_state(idx, TaskState.CANCELLED, finished_at=time.time())
            return
        super()._complete(comp)

    def set_state(self, idx: int, new: TaskState, record: bool = True, **fields: Any) -> None:
        super().set_state(idx, new, record, **fields)
        if new in _LIVE or idx not in self.futures:
            return
        fut = self.futures.pop(idx)
        self.by_future.pop(id(fut), None)
        node = self.graph.nodes[idx]
        if new in (TaskState.SUCCEEDED, TaskState.CACHED):
            try:
                value = self.load_key(node.key)
            except Exception as exc:  # the stored value cannot be read back
                _resolve(fut, exc=exc)
            else:
                _resolve(fut, value=value)
        elif new is TaskState.CANCELLED and (idx in self.user_cancelled or self.cancelling):
            fut.cancel()
        else:
            reason = str(fields.get("error") or new.value)
            _resolve(fut, exc=RemoteError(node.name, reason, self.tracebacks.pop(idx, "")))


def _resolve(fut: CFuture[Any], value: Any = None, exc: BaseException | None = None) -> None:
    """Set a caller's future, unless the caller cancelled it meanwhile."""
    if fut.done():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
    except InvalidStateError:
        pass
