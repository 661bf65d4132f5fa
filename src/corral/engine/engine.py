"""The engine loop: release ready tasks to the executor, record what comes back, obey control
requests (pause, resume, cancel), retry failures, expand dynamic scatters.

Everything the engine decides is persisted through the :class:`Recorder` in one transaction per
iteration, so a killed engine leaves a store from which the next engine resumes.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from corral.errors import CorralError
from corral.executors.base import AttemptRef, Completion, Executor, Outcome, TaskSpec
from corral.graph import Future, Node, NodeKind
from corral.hashing import file_digest, hash_value
from corral.resources import PerResources, Resources
from corral.states import DONE_TASK_STATES, AttemptState, RunState, TaskState, check_task
from corral.store import Store
from corral.store.store import disk_full
from corral.store.writes import provisional_id

from .gc_pause import collection_paused
from .plan import Plan, key_nodes
from .progress import Progress
from .recorder import Recorder
from .specs import (
    PayloadBuilder,
    attempt_dir,
    attempt_env,
    make_spec,
    may_retry,
    node_cacheable,
    node_resources,
    node_retries,
    node_retry_cancelled,
    short_params,
)
from .values import GatherRef, output_files, shell_value

log = logging.getLogger("corral.engine")

CONTROL_INTERVAL = 0.5
FLUSH_INTERVAL = 0.25
_NO_UPSTREAM: dict[str, str] = {}
"""The ``upstream`` of every task row without dependencies: one object, serialised once."""
_LATER_COLUMNS: dict[str, Any] = {"attempts": 0, "error": None, "started_at": None,
                                  "finished_at": None}
"""The columns a task row gets as its task goes, in a row written later (the rows of one
insert have the same columns)."""
PERSIST_CHUNK = 20_000
"""Task rows built and written at a time when a run's tasks are persisted."""


@dataclass
class EngineOptions:
    jobs: int = 2
    """Attempts handed to the executor at once (``-j``); 0: no limit (a cluster executor's own
    ``max_jobs`` and array throttle govern)."""
    force: list[str] = field(default_factory=list)
    """Task names or glob patterns to rerun (with everything downstream)."""
    no_cache: bool = False
    fail_fast: bool = False


class Engine:
    """Runs one planned graph as one run of the store."""

    def __init__(
        self, store: Store, plan: Plan, run_id: str, executor: Executor, options: EngineOptions,
        work_root: Path, on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.store, self.plan, self.run_id = store, plan, run_id
        self.graph = plan.graph
        self.executor, self.options, self.work_root = executor, options, work_root
        self.on_progress = on_progress
        n = len(self.graph.nodes)
        self.state: list[TaskState] = [TaskState.PENDING] * n
        """Each node's state; a pending node waits for its inputs, or is in :attr:`ready`."""
        self.waiting = [len(node.deps) for node in self.graph.nodes]
        self.attempt_no = [0] * n
        self.task_id: list[int] = [0] * n
        self.ready: deque[int] = deque()
        self.inflight: dict[str, int] = {}
        self.values: dict[str, Any] = {}
        self.rec = Recorder(store, self._task_ids_written)
        self.payloads = PayloadBuilder()
        self.progress = Progress(total=n)
        for node in self.graph.nodes:
            self.progress.count(node.group or node.name, None, TaskState.PENDING)
        self.paused = False
        self.cancelling = False
        self._looping = False
        self._interrupted = False
        self.errors: list[str] = []
        self._last_control = 0.0
        self._forced: set[int] = set()
        self._ran_here: set[int] = set()
        """Nodes that already succeeded in this run (before a resume), with the same key."""
        self._inserted_cached: set[int] = set()
        """Nodes whose task row was inserted already marked cached."""
        self._res_dicts = PerResources(lambda res, _: res.to_dict())
        """``res.to_dict()`` shared by the rows that carry it (the bulk writer serialises it
        once for all of them; the dicts are never modified)."""
        self._envs = PerResources(lambda res, attempt: attempt_env(attempt, res))
        """:func:`attempt_env` shared by the specs (built once, pickled once per chunk sent to
        a worker, compared at once by the worker; nobody changes a spec's variables)."""
        self.withdrawn: dict[int, int] = {}
        """Attempts per node that never really ran (withdrawn by a pause, or abandoned by a
        stopped engine): they do not count toward retries or resources-by-attempt."""

    # ------------------------------------------------------------------ set-up

    def prepare(self) -> None:
        """Persist task rows, decide what is cached, re-attach surviving attempts."""
        self._forced = self._forced_nodes()
        everything = list(range(len(self.graph.nodes)))
        cached = self._cached_set(everything)
        self._persist_tasks(self.graph.nodes, cached)
        self._persist_edges()
        self._apply_cached(everything, cached)
        self._reattach()
        for i in range(len(self.graph.nodes)):
            if self.state[i] is TaskState.PENDING and self.waiting[i] == 0:
                self._make_ready(i)
        self.rec.flush()

    def _forced_nodes(self) -> set[int]:
        if not self.options.force:
            return set()
        hit = [
            n.idx for n in self.graph.nodes
            if any(fnmatch.fnmatchcase(n.name, p) or fnmatch.fnmatchcase(n.group, p)
                   or n.name.split(".")[-1].split("[")[0] == p for p in self.options.force)
        ]
        if not hit:
            names = sorted({n.group for n in self.graph.nodes})
            raise CorralError(
                f"--force {' '.join(self.options.force)} matches no task; task names are "
                f"{', '.join(names[:10])}"
            )
        out, stack = set(hit), list(hit)
        while stack:
            for c in self.plan.children[stack.pop()]:
                if c not in out:
                    out.add(c)
                    stack.append(c)
        return out

    def _persist_tasks(self, nodes: list[Node], cached: set[int] | None = None,
                       fresh: bool = False) -> None:
        """Insert (or, on resume, update) task rows. New rows of ``cached`` nodes are written
        as cached at once, which spares a second write of every row of a cached run. New rows
        are built and written :data:`PERSIST_CHUNK` at a time, in one transaction, so that a
        million-task run never holds a million row dicts. ``fresh``: none of ``nodes`` can
        have a row yet (an interactive executor's calls: its run is never resumed); their rows
        are written later, with the state their tasks reached (see :meth:`_defer_rows`)."""
        if fresh:
            self._defer_rows(nodes)
            return
        # tasks added to a running run (a dynamic scatter's elements, an interactive executor's
        # calls) look up their own rows only, not the run's every row again
        wanted = None if len(nodes) == len(self.graph.nodes) else [n.name for n in nodes]
        existing = self.store.task_ids(self.run_id, wanted)
        cached = cached or set()
        copied = None if existing else self._unchanged_rows(nodes, cached)
        skip = set(copied[1]) if copied else set()
        self._inserted_cached |= skip
        changed = []
        for node in nodes:
            old = existing.get(node.name)
            if old is None or node.idx in skip:
                continue
            if old["state"] == TaskState.SUCCEEDED.value and old["key"] == node.key:
                self._ran_here.add(node.idx)
            self.task_id[node.idx] = old["id"]
            self.attempt_no[node.idx] = old["attempts"]
            changed.append({"_id": old["id"], "idx": node.idx, "key": node.key,
                            "params": short_params(node)})
        new = [n for n in nodes if n.idx not in skip and n.name not in existing]
        self.store.write_tasks(self.run_id, self._new_rows(new, cached), changed,
                               TaskState.PENDING.value, len(self.graph.nodes), copied)
        if new or skip:
            # (nodes are added at the end of the graph: their rows have the highest indices)
            names = self.graph.names
            first = None if wanted is None else min(n.idx for n in nodes)
            for name, row_id in self.store.task_row_ids(self.run_id, first).items():
                idx = names.get(name)
                if idx is not None:
                    self.task_id[idx] = row_id

    def _defer_rows(self, nodes: list[Node]) -> None:
        """The rows of ``nodes`` (none has one yet) go to the recorder, which writes each when
        its task has ended (or a moment later, see :meth:`Recorder.tasks_new`): written once,
        not inserted and then updated. Until then a task goes by a provisional id."""
        for rows in self._new_rows(nodes, set()):
            waiting = {}
            for row in rows:
                row.update(_LATER_COLUMNS)
                idx = row["idx"]
                waiting[provisional_id(idx)] = row
                self.task_id[idx] = provisional_id(idx)
            self.rec.tasks_new(self.run_id, len(self.graph.nodes), waiting)

    def _task_ids_written(self, ids: dict[int, int]) -> None:
        """Rows of :meth:`_defer_rows` were written: their ids replace the provisional ones."""
        task_id = self.task_id
        for idx, row_id in ids.items():
            if task_id[idx] == provisional_id(idx):
                task_id[idx] = row_id

    def _new_rows(self, nodes: list[Node], cached: set[int]) -> Iterator[list[dict[str, Any]]]:
        """The task rows of ``nodes`` (none has a row yet), :data:`PERSIST_CHUNK` at a time."""
        for start in range(0, len(nodes), PERSIST_CHUNK):
            rows = []
            for node in nodes[start:start + PERSIST_CHUNK]:
                is_cached = node.idx in cached
                if is_cached:
                    self._inserted_cached.add(node.idx)
                rows.append({
                    "run_id": self.run_id, "idx": node.idx, "name": node.name,
                    "grp": node.group, "kind": node.kind.value, "key": node.key,
                    "cached": is_cached,
                    "state": (TaskState.CACHED if is_cached else TaskState.PENDING).value,
                    "code_hash": _code_of(node), "params": short_params(node),
                    "inputs": self.plan.inputs.get(node.idx),
                    "upstream": {self.graph.nodes[d].name: self.graph.nodes[d].key
                                 for d in node.deps} if node.deps else _NO_UPSTREAM,
                    "resources": self._resources_json(node) if node.task or node.shell else None,
                })
            yield rows

    def _unchanged_rows(self, nodes: list[Node], cached: set[int]) -> tuple[str, list[int]] | None:
        """A new run's cached nodes whose rows would be those of the previous run of the same
        pipeline and parameters (same index, name, key, group, kind and resources; their
        upstream tasks too): that run and their indices, for the store to copy them in SQL
        instead of building and writing them again (a re-check)."""
        if not cached or len(nodes) != len(self.graph.nodes):
            return None
        found = self.store.previous_task_rows(self.run_id, len(nodes))
        if found is None:
            return None
        source, old = found
        same = {n.idx for n in nodes if old.get(n.idx) == (
            n.name, n.key, n.group, n.kind.value,
            self._resources_json(n) if n.task or n.shell else None)}
        return source, sorted(i for i in same & cached
                              if all(d in same for d in nodes[i].deps))

    def _resources_json(self, node: Node) -> dict[str, Any]:
        """JSON form of a node's first-attempt resources, one dict per distinct Resources."""
        return self._res_dict(node_resources(node, 1))

    def _res_dict(self, res: Resources) -> dict[str, Any]:
        """``res.to_dict()``, one shared dict per Resources object."""
        return self._res_dicts.get(res)

    def _persist_edges(self) -> None:
        rows = [{"run_id": self.run_id, "parent": d, "child": n.idx}
                for n in self.graph.nodes for d in n.deps]
        self.store.replace_edges(self.run_id, rows)

    def _resolve_cached(self, idxs: list[int]) -> None:
        self._apply_cached(idxs, self._cached_set(idxs))

    def _cached_set(self, idxs: list[int]) -> set[int]:
        """Nodes whose key has a stored result with its output files intact (or restored)."""
        nodes = self.graph.nodes
        candidates = [i for i in idxs if nodes[i].kind is not NodeKind.EXPAND
                      and i not in self._forced and not self.options.no_cache
                      and node_cacheable(nodes[i])]
        # with their output files: declared shell outputs and returned Paths alike
        found = self.store.completed(nodes[i].key for i in candidates)
        return {i for i in candidates if nodes[i].key in found
                and self._outputs_ok(nodes[i], found[nodes[i].key])}

    def _apply_cached(self, idxs: list[int], cached: set[int]) -> None:
        nodes = self.graph.nodes
        for i in idxs:
            if i not in cached:
                continue
            if i in self._ran_here:  # resumed: it ran in this very run, keep it so
                self.progress.done += 1
                self.set_state(i, TaskState.SUCCEEDED, cached=False)
                continue
            self.progress.cached += 1
            if i in self._inserted_cached:  # its row was written cached already
                self.set_state(i, TaskState.CACHED, record=False)
            else:
                self.set_state(i, TaskState.CACHED, cached=True)
        for i in idxs:
            node = nodes[i]
            if node.kind is NodeKind.EXPAND and node.expand \
                    and self.state[node.expand.gather] in DONE_TASK_STATES:
                self.set_state(i, TaskState.CACHED, cached=True)
        for i in idxs:
            if self.state[i] in DONE_TASK_STATES:
                for c in self.plan.children[i]:
                    self.waiting[c] -= 1

    def _outputs_ok(self, node: Node, recorded: dict[str, str]) -> bool:
        """Cached outputs must be on disk as recorded: a missing one is restored from the clone
        or small copy the CAS kept (see :meth:`CAS.keep_file`), else the task runs again, as it
        does when a file changed since then. A file is read only if its stat signature changed
        (:func:`file_digest`)."""
        for path, digest in recorded.items():
            p = Path(path)
            if not p.exists():
                if not self.store.cas.restore(digest, p):
                    return False
            elif file_digest(p) != digest:
                return False
        return True

    def _reattach(self) -> None:
        by_task = {tid: i for i, tid in enumerate(self.task_id)}
        for task_id, n in self.store.uncounted_attempts(self.run_id).items():
            if task_id in by_task:
                self.withdrawn[by_task[task_id]] = n
        rows = self.store.inflight_attempts(self.run_id)
        if not rows:
            return
        refs = [AttemptRef(r["id"], r["native_id"], Path(r["workdir"] or "."), r["submitted_at"])
                for r in rows if r["native_id"]]
        taken = set(self.executor.reattach(refs)) if refs else set()
        for r in rows:
            idx = by_task.get(r["task_id"])
            if r["id"] in taken and idx is not None and self.state[idx] not in DONE_TASK_STATES:
                self.set_state(idx, TaskState.RUNNING if r["started_at"] else TaskState.QUEUED)
                self.inflight[r["id"]] = idx
                self.attempt_no[idx] = max(self.attempt_no[idx], r["number"])
                self.progress.running += 1
                log.info("re-attached %s (%s)", self.graph.nodes[idx].name, r["native_id"])
            else:
                self.rec.attempt(r["id"], state=AttemptState.ABANDONED.value, ended_at=time.time(),
                                 error="the engine that submitted this attempt stopped")
                if idx is not None:  # cut off, not failed: it does not use up a retry
                    self.withdrawn[idx] = self.withdrawn.get(idx, 0) + 1

    # ------------------------------------------------------------------ main loop

    def run(self) -> RunState:
        with collection_paused():
            self.prepare()
        self._report()
        self._looping = True
        try:
            return self._loop()
        finally:
            self._looping = False

    def interrupt(self) -> None:
        """Stop with KeyboardInterrupt at the loop's next turn (within 0.2 s). For a signal
        handler: raised there, at any instruction, the exception could leave a lock taken or a
        transaction open that the clean-up then waits for. Outside the loop, or a second time
        (Ctrl-C pressed again), it raises at once."""
        if not self._looping or self._interrupted:
            raise KeyboardInterrupt("interrupted")
        self._interrupted = True

    def _loop(self) -> RunState:
        while True:
            if self._interrupted:
                raise KeyboardInterrupt("interrupted")
            self._control()
            if self.cancelling and not self.inflight:
                break
            if not self.paused and not self.cancelling:
                self._release()
            if not self.inflight and not self.ready:
                if not self.paused:
                    break
            # poll without waiting only while ready tasks could still be handed over; when the
            # executor is full, wait for a completion instead of spinning a core
            timeout = 0.0 if (self.ready and not self.paused and self._room() > 0) else 0.2
            for comp in self.executor.poll(timeout):
                self._complete(comp)
            # flush when idle or every FLUSH_INTERVAL; tasks just made ready are handed over
            # first (a gather waited for the fsync of every part it consumes)
            idle = not self.inflight and not (self.ready and self._room() > 0 and not self.paused)
            if self.rec.dirty and (idle or
                                   time.monotonic() - self.rec.last_flush > FLUSH_INTERVAL):
                self.rec.flush()
            self._report()
        self.rec.flush()
        return self._final_state()

    def _final_state(self) -> RunState:
        """The invariant of a run's end: SUCCEEDED only if every task succeeded or was cached;
        anything else is CANCELLED (this run's own cancel) or FAILED, with a reason."""
        if self.cancelling:
            return RunState.CANCELLED
        unfinished = [self.graph.nodes[i].name for i, s in enumerate(self.state)
                      if s not in DONE_TASK_STATES]
        if not unfinished:
            return RunState.SUCCEEDED
        if not self.errors:  # nothing failed, yet something did not run: never "succeeded"
            shown = ", ".join(unfinished[:5]) + (" ..." if len(unfinished) > 5 else "")
            self.errors.append(f"{len(unfinished)} task(s) did not finish ({shown}); "
                               "run the same command again to resume")
        return RunState.FAILED

    def _report(self) -> None:
        if self.on_progress is not None:
            self.progress.running = len(self.inflight)
            self.progress.total = len(self.graph.nodes)
            self.progress.paused = self.paused
            self.on_progress(self.progress)

    def _control(self) -> None:
        now = time.monotonic()
        if now - self._last_control < CONTROL_INTERVAL:
            return
        self._last_control = now
        control = self.store.heartbeat(self.run_id)
        if control == "cancel" and not self.cancelling:
            self.cancel()
        elif control == "pause" and not self.paused:
            self.paused = True
            withdraw = getattr(self.executor, "withdraw", None)
            for attempt_id in withdraw() if withdraw else []:
                idx = self.inflight.pop(attempt_id)
                self.withdrawn[idx] = self.withdrawn.get(idx, 0) + 1
                self.set_state(idx, TaskState.PENDING)
                self.ready.appendleft(idx)
                self.rec.attempt(attempt_id, state=AttemptState.WITHDRAWN.value, ended_at=time.time())
            self.store.update_run(self.run_id, state=RunState.PAUSED.value)
        elif control == "none" and self.paused:
            self.paused = False
            self.store.update_run(self.run_id, state=RunState.RUNNING.value)

    def cancel(self) -> None:
        """Stop releasing tasks, cancel the running ones; every task not yet started (ready or
        waiting for its inputs) ends CANCELLED, as when no engine is alive."""
        self.cancelling = True
        if self.inflight:
            self.executor.cancel(list(self.inflight))
        self.ready.clear()
        for i, s in enumerate(self.state):
            if s is TaskState.PENDING:
                self.set_state(i, TaskState.CANCELLED)

    def _make_ready(self, idx: int) -> None:
        node = self.graph.nodes[idx]
        if node.kind in (NodeKind.GATHER, NodeKind.EXPAND):
            self._run_inline(idx)
            return
        self.ready.append(idx)  # still pending: waiting for room under -j

    def _room(self) -> int:
        """How many ready tasks may be handed to the executor now: its own capacity and, unless
        it applies the -j limit itself (the local executor queues and runs at most -j), -j
        (none when 0: cluster executors without -j)."""
        cap = self.executor.capacity()
        room = len(self.ready) if cap is None else cap
        if self.options.jobs > 0 and not self.executor.applies_parallel_limit:
            room = min(room, self.options.jobs - len(self.inflight))
        return room

    def _release(self) -> None:
        limit = self._room()
        batch: list[TaskSpec] = []
        while self.ready and len(batch) < limit:
            idx = self.ready.popleft()
            spec = self._spec(idx)
            if spec is not None:
                batch.append(spec)
        if batch:
            self.executor.submit(batch)

    def _real_attempt(self, idx: int) -> int:
        """The attempt number a task sees (resources, retries): withdrawn ones do not count."""
        return self.attempt_no[idx] - self.withdrawn.get(idx, 0)

    def _spec(self, idx: int) -> TaskSpec | None:
        node = self.graph.nodes[idx]
        self.attempt_no[idx] += 1
        n = self.attempt_no[idx]
        real = self._real_attempt(idx)
        try:
            resources = node_resources(node, real)
            self.executor.validate(resources)
            kind, payload = self.payloads.payload(node, self._argument_loader(node))
        except CorralError as exc:
            self._fail(idx, str(exc))
            return None
        spec = make_spec(node, self.run_id, n, self.work_root, self.plan.cwd, kind, payload,
                         resources, real, self.executor.stages_inputs, self._envs.get(resources, real))
        self.inflight[spec.attempt_id] = idx
        now = time.time()
        first: dict[str, Any] = {"started_at": now} if n == 1 else {}
        self.set_state(idx, TaskState.QUEUED, attempts=n, **first)
        self.rec.attempt_new({
            "id": spec.attempt_id, "task_id": self.task_id[idx], "run_id": self.run_id,
            "number": n, "state": AttemptState.SUBMITTED.value, "executor": self.executor.kind,
            "workdir": str(spec.workdir), "resources": self._res_dict(resources), "submitted_at": now,
        })
        return spec

    def attempt_started(self, attempt_id: str, when: float, host: str | None) -> None:
        """The executor saw an attempt start: it and its task are running, no longer queued."""
        self.rec.attempt(attempt_id, state=AttemptState.RUNNING.value, started_at=when, host=host)
        idx = self.inflight.get(attempt_id)
        if idx is not None:
            self.set_state(idx, TaskState.RUNNING)

    # ------------------------------------------------------------------ values

    def load_future(self, fut: Future) -> Any:
        """The value of a future: a shell task's output paths, or a stored result."""
        node = fut.node
        if node.kind is NodeKind.SHELL and node.shell is not None:
            return shell_value(node.shell)
        return self.load_key(node.key)

    def load_key(self, key: str) -> Any:
        from corral.worker.execute import StoredResult, load_file

        if key in self.values:
            value = self.values[key]
            return load_file(value.path) if isinstance(value, StoredResult) else value
        data, blob = self._stored(key)
        value = load_file(blob) if blob is not None else cloudpickle.loads(data)
        if isinstance(value, GatherRef):
            value = [self.load_key(k) for k in value.keys]
        return value

    def _stored(self, key: str) -> tuple[bytes, Path | None]:
        """A stored result: its pickle when it is in memory or in its row, else the CAS blob
        that holds it (read by whoever needs it, from the file)."""
        data = self.rec.pending_value(key)
        if data is not None:
            return data, None
        row = self.store.result_row(key)
        if row is not None and row["value"] is not None:
            return bytes(row["value"]), None
        if row is None or not row["digest"]:
            return self.store.load_value(key), None  # (which says what is missing)
        return b"", self.store.cas.path(row["digest"])

    def _argument_loader(self, node: Node) -> Callable[[Future], Any]:
        """How upstream values become a task's arguments: by reference to their stored blob
        for the local executor and those whose workers see this machine's files
        (``reads_engine_files``) or are sent them (``stages_engine_files``), by value elsewhere
        (a remote worker cannot read them) and for a shell task (its command line is written
        here, with the values in it)."""
        ex = self.executor
        shared = ex.kind == "local" or ex.reads_engine_files or ex.stages_engine_files
        return self.load_arg if shared and node.kind is not NodeKind.SHELL else self.load_future

    def load_arg(self, fut: Future) -> Any:
        """The value of a future as an argument of a task (see :meth:`specs.Payloads.payload`):
        a large value in the CAS goes by reference (a :class:`ResultRef` to its blob), loaded
        by the worker that needs it, never by the engine."""
        node = fut.node
        if node.kind is NodeKind.SHELL:
            return self.load_future(fut)
        return self._arg_of_key(node.key)

    def _arg_of_key(self, key: str) -> Any:
        from corral.worker.execute import SPILL_MIN, ResultRef, StoredResult, load_file

        # absolute: the worker runs in the pipeline's directory, the store may be named from
        # elsewhere (corral run --workdir out/demo)
        if key in self.values:
            value = self.values[key]
            if isinstance(value, StoredResult):
                return ResultRef(os.path.abspath(value.path))
            return value
        data, blob = self._stored(key)
        if blob is not None and blob.stat().st_size > SPILL_MIN:
            return ResultRef(os.path.abspath(blob))
        value = load_file(blob) if blob is not None else cloudpickle.loads(data)
        if isinstance(value, GatherRef):
            value = [self._arg_of_key(k) for k in value.keys]
        return value

    # ------------------------------------------------------------------ completions

    def _complete(self, comp: Completion) -> None:
        idx = self.inflight.pop(comp.attempt_id, None)
        if idx is None:
            return
        m = comp.metrics
        measured = dict(
            started_at=m.started, ended_at=m.ended or time.time(), wall=m.wall,
            cpu_user=m.cpu_user, cpu_system=m.cpu_system, peak_rss=m.peak_rss,
            read_bytes=m.read_bytes, write_bytes=m.write_bytes, exit_code=m.exit_code,
            host=m.host, native_id=m.native_id,
        )
        # unknown metrics must not erase what the listener already recorded (start, host)
        self.rec.attempt(comp.attempt_id, state=comp.outcome.value, error=comp.error,
                         **{k: v for k, v in measured.items() if v is not None})
        if comp.stdout or comp.stderr:
            self._write_logs(idx, comp)
        if comp.outcome is Outcome.SUCCEEDED:
            try:
                self._succeed(idx, comp)
            except OSError as exc:
                if disk_full(exc):  # every next result would fail too: stop, resume later
                    raise self.store.write_error(exc) from exc
                self._fail(idx, f"its result could not be stored: {exc}")
            except (CorralError, ValueError) as exc:
                self._fail(idx, f"its result could not be stored: {exc}")
            return
        node = self.graph.nodes[idx]
        if may_retry(comp.outcome, self._real_attempt(idx), node_retries(node),
                     node_retry_cancelled(node)) and not self.cancelling:
            log.info("retrying %s after %s", node.name, comp.outcome.value)
            self.set_state(idx, TaskState.PENDING)
            self.ready.append(idx)
            return
        if comp.outcome is Outcome.CANCELLED and self.cancelling:  # this run's own cancel
            self.set_state(idx, TaskState.CANCELLED, finished_at=time.time())
            return
        if comp.outcome is Outcome.CANCELLED:  # scancel, qdel, kill: a fault, not a request
            self._fail(idx, self._cancelled_outside(comp), TaskState.CANCELLED)
            return
        self._fail(idx, summary(comp))

    def _cancelled_outside(self, comp: Completion) -> str:
        """The one-line reason of an attempt cancelled by someone else than this run."""
        kind = getattr(self.executor, "kind", "")
        native = comp.metrics.native_id
        where = f" ({kind} job {native})" if native and kind not in ("", "local") else ""
        detail = (comp.error or "").strip().splitlines()
        tail = f": {detail[-1]}" if detail and detail[-1] != "cancelled" else ""
        return f"cancelled outside Corral{where}{tail}"

    def _write_logs(self, idx: int, comp: Completion) -> None:
        node = self.graph.nodes[idx]
        spec_dir = attempt_dir(self.work_root, node, self.attempt_no[idx])
        spec_dir.mkdir(parents=True, exist_ok=True)
        if comp.stdout:
            (spec_dir / "stdout.log").write_text(comp.stdout)
        if comp.stderr:
            (spec_dir / "stderr.log").write_text(comp.stderr)

    def _succeed(self, idx: int, comp: Completion) -> None:
        from corral.worker.execute import StoredResult

        node = self.graph.nodes[idx]
        now = time.time()
        data = comp.result if comp.result is not None else cloudpickle.dumps(None)
        value: Any = None
        stored: tuple[str, int] | None = None
        if node.kind is NodeKind.SHELL and node.shell is not None:
            value = shell_value(node.shell)
            files = [Path(self.plan.cwd, o).resolve() for o in node.outputs]
        else:
            value = cloudpickle.loads(data)
            if isinstance(value, StoredResult):  # a large value the worker wrote to a file
                self.store.cas.adopt(Path(value.path), value.digest)
                stored = (value.digest, value.size)
                files = [Path(self.plan.cwd, f).resolve() for f in value.files]
                value = StoredResult(value.digest, value.size,
                                     str(self.store.cas.path(value.digest)), [])
            else:
                files = output_files(value, self.plan.cwd)
        self._store_result(idx, data, files, comp.attempt_id, now, stored)
        if stored is not None or len(data) < 4096:
            self.values[node.key] = value  # a StoredResult: where the value is, not the value
        self.progress.done += 1
        self.set_state(idx, TaskState.SUCCEEDED, finished_at=now, cached=False, error=None)
        self._release_children(idx)

    def _store_result(self, idx: int, data: bytes, files: list[Path], attempt_id: str | None,
                      now: float, stored: tuple[str, int] | None = None) -> None:
        node = self.graph.nodes[idx]
        self.rec.task_result(self.run_id, self.task_id[idx], node.key, node.name, attempt_id,
                             data, files, now, stored)

    def _release_children(self, idx: int) -> None:
        for c in self.plan.children[idx]:
            self.waiting[c] -= 1
            if self.waiting[c] == 0 and self.state[c] is TaskState.PENDING:
                self._make_ready(c)

    def set_state(self, idx: int, new: TaskState, record: bool = True, **fields: Any) -> None:
        """The one place a task's state changes: checked against the transition table of
        :mod:`corral.states`, counted for the progress display, then recorded with ``fields``
        (``record=False``: its row says so already)."""
        node = self.graph.nodes[idx]
        old, self.state[idx] = self.state[idx], check_task(self.state[idx], new, node.name)
        self.progress.count(node.group or node.name, old, new)
        if record:
            self.rec.task(self.task_id[idx], state=new.value, **fields)

    def _fail(self, idx: int, reason: str, state: TaskState = TaskState.FAILED) -> None:
        """End task ``idx`` as FAILED (or CANCELLED from outside) and skip its dependents."""
        node = self.graph.nodes[idx]
        self.progress.failed += 1
        self.errors.append(f"{node.name}: {reason}")
        self.set_state(idx, state, error=reason, finished_at=time.time())
        stack = list(self.plan.children[idx])
        while stack:
            c = stack.pop()
            if self.state[c] is TaskState.PENDING:
                if c in self.ready:
                    self.ready.remove(c)
                self.progress.skipped += 1
                self.set_state(c, TaskState.SKIPPED, error=f"upstream task {node.name} failed")
                stack.extend(self.plan.children[c])
        if self.options.fail_fast and not self.cancelling:
            self.cancel()

    # ------------------------------------------------------------------ inline nodes

    def _run_inline(self, idx: int) -> None:
        node = self.graph.nodes[idx]
        try:
            if node.kind is NodeKind.EXPAND:
                self._expand(idx)
                self.set_state(idx, TaskState.SUCCEEDED, finished_at=time.time())
                self._release_children(idx)
            else:
                keys = [self.graph.nodes[m].key for m in node.members or []]
                data = cloudpickle.dumps(GatherRef(keys))
                self._store_result(idx, data, [], None, time.time())
                self.progress.done += 1
                self.set_state(idx, TaskState.SUCCEEDED, finished_at=time.time())
                self._release_children(idx)
        except CorralError as exc:
            self._fail(idx, str(exc))

    def _expand(self, idx: int) -> None:
        """Add one node per element of the runtime list, and make the gather wait for them."""
        spec = self.graph.nodes[idx].expand
        assert spec is not None
        items = self.load_future(spec.source)
        if not isinstance(items, list | tuple):
            raise CorralError(
                f"task {spec.source.node.name} returned {type(items).__name__}, not a list; "
                f"each(...) needs a task that returns a list"
            )
        gather = self.graph.nodes[spec.gather]
        base = gather.name[: -len("[*]")]
        new: list[Node] = []
        for i, item in enumerate(items):
            kwargs = {**spec.fixed_kwargs, spec.arg_name: item}
            fut = spec.task.add_call(self.graph, (), kwargs, f"{base}[{i}]")
            new.append(fut.node)
        gather.members = [n.idx for n in new]
        gather.deps = [idx, *gather.members]
        n = len(self.graph.nodes)
        self.state += [TaskState.PENDING] * (n - len(self.state))
        for node in new:
            self.progress.count(node.group or node.name, None, TaskState.PENDING)
        self.attempt_no += [0] * (n - len(self.attempt_no))
        self.task_id += [0] * (n - len(self.task_id))
        self.waiting += [len(x.deps) for x in new]
        for node in new:
            self.plan.add_node_children(node)
            self.plan.children[node.idx].append(gather.idx)
        self.waiting[gather.idx] += len(new)
        key_nodes(self.plan, new, set())
        self._persist_tasks(new)
        self._resolve_cached([x.idx for x in new])
        # the edge expander -> gather was persisted with the plan; add the elements' edges
        edges = [{"run_id": self.run_id, "parent": d, "child": x.idx}
                 for x in new for d in x.deps]
        edges += [{"run_id": self.run_id, "parent": x.idx, "child": gather.idx} for x in new]
        self.store.add_edges(edges)
        for node in new:
            if self.state[node.idx] is TaskState.PENDING:
                self.waiting[node.idx] = sum(1 for d in node.deps
                                             if self.state[d] not in DONE_TASK_STATES)
                if self.waiting[node.idx] == 0:
                    self._make_ready(node.idx)


def summary(comp: Completion) -> str:
    """The one-line reason of a failed attempt. For a task's own failure, the last line of
    its error (the exception); for a kill by the system (memory, walltime, node, lost job),
    Corral's classification first, then the last line of what the system said."""
    lines = [line.strip() for line in (comp.error or "").strip().splitlines() if line.strip()]
    outcome = comp.outcome.value.replace("_", " ")
    if not lines:
        return f"{outcome}: no details"
    if comp.outcome is Outcome.FAILED or len(lines) == 1:
        return f"{outcome}: {lines[-1]}"
    return f"{outcome}: {lines[0]} | {lines[-1]}"


def _code_of(node: Node) -> str | None:
    if node.task is not None:
        return node.task.code
    if node.expand is not None:
        return node.expand.task.code
    if node.shell is not None:
        return hash_value(node.shell.command)
    return None


