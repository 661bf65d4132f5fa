"""The state store API. Engine, CLI, reports and a future server all go through :class:`Store`.

SQLite (WAL) under ``.corral/`` is the default; any SQLAlchemy URL works (PostgreSQL is tested).
Writes of one engine iteration are grouped in one transaction (:meth:`Store.transaction`).
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from corral.errors import MissingExtra, RunLockedError, RunNotFound, StoreError, UsageError
from corral.hashing import use_digest_cache
from corral.states import (
    LIVE_ATTEMPT_STATES,
    TERMINAL_RUN_STATES,
    UNCOUNTED_ATTEMPT_STATES,
    UNFINISHED_TASK_STATES,
    AttemptState,
    RunState,
    TaskState,
    check_run,
)
from corral.store import listing, queries, writes
from corral.store import schema as t
from corral.store.cas import CAS
from corral.store.digests import StatDigestCache
from corral.store.migrate import HEAD_REVISION as HEAD_REVISION
from corral.store.migrate import ensure_schema
from corral.store.outage import Outage, ReplayingConnection, outage_limit
from corral.store.rows import AttemptRow, RunRow, TaskRow
from corral.store.wal import use_wal

INLINE_LIMIT = 64 * 1024
"""Results up to this size live in the database row; larger ones in the CAS."""
GC_MIN_AGE = 3600.0
"""Seconds a CAS blob is safe from `corral clean` after it was written or last reused."""
HEARTBEAT_STALE = 60.0
"""Seconds after which another host's engine is considered dead."""


def default_url(workdir: Path) -> str:
    return f"sqlite:///{(workdir / '.corral' / 'state.db').resolve()}"


SQLITE_BUSY_SECONDS = 30.0
"""How long a SQLite connection waits for another's lock before it reports the database locked."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    use_wal(cur, SQLITE_BUSY_SECONDS)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError or a database error) says the disk or quota is full."""
    errno_ = getattr(exc, "errno", None) or getattr(getattr(exc, "orig", None), "errno", None)
    text = str(exc).lower()
    return errno_ in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in text \
        or "no space left" in text or "disk quota" in text


NAMES_PER_QUERY = 900
"""Task names looked up by one ``IN (...)``: under SQLite's bound-parameter limit (999 in older
builds)."""


class Store:
    """Database plus CAS. Cheap to create; share one per process."""

    def __init__(self, url: str, cas_root: Path) -> None:
        self.url = url
        self.cas = CAS(cas_root)
        self.digests = StatDigestCache(cas_root.parent / "digests.db")
        use_digest_cache(self.digests)  # file digests outlive this process
        try:
            self.engine: Engine = self._create_engine(url)
            self._sqlite = self.engine.dialect.name == "sqlite"
            self.outage = Outage(self._safe_url(), outage_limit())
            ensure_schema(self.engine, self._safe_url())
        except ImportError as exc:  # the database's driver is not installed
            if url.startswith("postgres"):
                raise MissingExtra(f"the state store {self._safe_url()}", "postgres", exc) from exc
            raise UsageError(
                f"the state store {self._safe_url()} needs the database driver {exc.name!r}, which is "
                f"not installed; install it into Corral's environment (pip install {exc.name})"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(
                f"cannot open the state store {self._safe_url()}: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}; check the --db URL and that the server is up"
            ) from exc

    @classmethod
    def open(cls, workdir: Path, url: str | None = None) -> Store:
        """The store of a working directory (``.corral/``), or the database at ``url``."""
        root = workdir / ".corral"
        root.mkdir(parents=True, exist_ok=True)
        return cls(url or default_url(workdir), root / "cas")

    def _safe_url(self) -> str:
        try:
            return sa.engine.make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<invalid url>"

    @staticmethod
    def _create_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        parsed = sa.engine.make_url(url)
        args = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            args["connect_timeout"] = 10  # a server that does not answer is an outage too
        return sa.create_engine(url, pool_pre_ping=True, connect_args=args)

    def close(self) -> None:
        self.engine.dispose()
        self.digests.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A committed-or-rolled-back transaction. A database failure becomes one StoreError
        line that says what to do (a full disk, most often): what was committed before stays,
        and the same command resumes from it. On a server database a lost connection is
        retried with back-off and the transaction replayed, up to the outage limit
        (:mod:`corral.store.outage`)."""
        if self._sqlite:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except sa.exc.OperationalError as exc:
                raise self.write_error(exc) from exc
            return
        replaying = ReplayingConnection(self.engine, self.outage)
        try:
            yield cast(Connection, replaying)  # duck-typed: what transactions use of one
            replaying.commit()
        except sa.exc.OperationalError as exc:
            raise self.write_error(exc) from exc
        finally:
            replaying.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reading; on a server database it rides out an outage as
        :meth:`transaction` does."""
        if self._sqlite:
            with self.engine.connect() as conn:
                yield conn
            return
        replaying = ReplayingConnection(self.engine, self.outage)
        try:
            yield cast(Connection, replaying)
        finally:
            replaying.close()

    def write_error(self, exc: BaseException) -> StoreError:
        """The one-line StoreError for a failed write to the database or the CAS."""
        text = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        if disk_full(exc):
            return StoreError(
                f"the state store's disk is full ({self._safe_url()}, "
                f"{os.path.abspath(self.cas.root)}): {text}; "
                "free some space (corral clean removes unused results) and run the same "
                "command again: what finished is kept")
        return StoreError(f"the state store {self._safe_url()} failed: {text}; run the same "
                          "command again once it is fixed: what finished is kept")

    # ------------------------------------------------------------------ runs

    def create_run(self, row: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(t.runs.insert().values(**row))

    def get_run(self, run_id: str) -> RunRow:
        """A run by id or unique id prefix; ``latest`` means the newest run."""
        with self._read() as c:
            if run_id in ("latest", "last", "-"):
                q = sa.select(t.runs).order_by(t.runs.c.created_at.desc()).limit(1)
            else:
                q = sa.select(t.runs).where(t.runs.c.id.startswith(run_id, autoescape=True))
                q = q.limit(2)
            rows = c.execute(q).mappings().all()
        if not rows:
            raise RunNotFound(f"no run matches {run_id!r}; list runs with `corral runs`")
        if len(rows) > 1:
            raise RunNotFound(f"{run_id!r} matches several runs; give more characters of the id")
        return cast(RunRow, dict(rows[0]))

    def list_runs(self, limit: int = 50, owner: str | None = None) -> list[RunRow]:
        q = sa.select(t.runs).order_by(t.runs.c.created_at.desc()).limit(limit)
        if owner is not None:
            q = q.where(t.runs.c.owner == owner)
        with self._read() as c:
            return [cast(RunRow, dict(r)) for r in c.execute(q).mappings()]

    def find_resumable(self, identity: str) -> dict[str, Any] | None:
        """The newest unfinished run of the same pipeline, file and parameters."""
        q = (
            sa.select(t.runs)
            .where(t.runs.c.identity == identity, t.runs.c.state != RunState.SUCCEEDED.value)
            .order_by(t.runs.c.created_at.desc())
            .limit(1)
        )
        with self._read() as c:
            row = c.execute(q).mappings().first()
        return dict(row) if row else None

    def update_run(self, run_id: str, **values: Any) -> None:
        """Change a run's row; a new ``state`` must be a transition of :mod:`corral.states`
        from the recorded one (checked in the same transaction)."""
        with self.transaction() as c:
            if "state" in values:
                old = c.execute(sa.select(t.runs.c.state).where(t.runs.c.id == run_id)).scalar()
                if old is not None:
                    check_run(old, RunState(values["state"]), run_id)
            c.execute(t.runs.update().where(t.runs.c.id == run_id).values(**values))
            if "state" in values:  # an ended run is summarised with its final state
                if RunState(values["state"]) in TERMINAL_RUN_STATES:
                    queries.seal_summary(c, run_id)
                else:
                    queries.drop_summary(c, run_id)

    def claim_run(self, run_id: str) -> str | None:
        """Make this process the run's engine. Returns a note when a stale lock was taken over.

        A lock is stale when its engine is dead: on this host its pid is gone; on another host
        its heartbeat is older than :data:`HEARTBEAT_STALE` seconds."""
        host, pid, now = socket.gethostname(), os.getpid(), time.time()
        with self.transaction() as c:
            row = c.execute(
                sa.select(t.runs.c.engine_host, t.runs.c.engine_pid, t.runs.c.heartbeat_at)
                .where(t.runs.c.id == run_id)
                .with_for_update()
            ).first()
            if row is None:
                raise RunNotFound(f"no run {run_id!r}")
            note = None
            if row.engine_pid and (row.engine_host, row.engine_pid) != (host, pid):
                if row.engine_host == host:
                    alive = pid_alive(row.engine_pid)
                else:
                    alive = (now - (row.heartbeat_at or 0)) < HEARTBEAT_STALE
                if alive:
                    raise RunLockedError(
                        f"run {run_id} is being executed by engine pid {row.engine_pid} on "
                        f"{row.engine_host}; wait for it, or stop it with `corral cancel {run_id}`"
                    )
                note = (
                    f"took over run {run_id} from a dead engine "
                    f"(pid {row.engine_pid} on {row.engine_host})"
                )
            c.execute(
                t.runs.update()
                .where(t.runs.c.id == run_id)
                .values(engine_host=host, engine_pid=pid, heartbeat_at=now)
            )
        return note

    def release_run(self, run_id: str, **values: Any) -> None:
        self.update_run(run_id, engine_pid=None, heartbeat_at=time.time(), **values)

    def claim_free(self, run_id: str) -> bool:
        """Take a run's claim if no process holds it (one atomic compare-and-set)."""
        with self.transaction() as c:
            return writes.claim_free(c, run_id)

    def release_own_claim(self, run_id: str) -> None:
        """Give up this process's claim of a run (left alone if another process took it)."""
        with self.transaction() as c:
            writes.release_own_claim(c, run_id)

    def control_of(self, run_id: str) -> str:
        """The control request of a run (``none``, ``pause``, ``cancel``)."""
        with self._read() as c:
            return writes.control_of(c, run_id)

    # -------------------------------------------------------------- reports' reads

    def value_digests(self, keys: Iterable[str]) -> dict[str, str]:
        with self._read() as c:
            return queries.value_digests(c, keys)

    def previous_task(self, name: str, run_id: str, before: float) -> dict[str, Any] | None:
        with self._read() as c:
            return queries.previous_task(c, name, run_id, before)

    def attempt(self, attempt_id: str) -> dict[str, Any] | None:
        with self._read() as c:
            return queries.attempt(c, attempt_id)

    def file_artifact(self, path: str, digest: str) -> dict[str, Any] | None:
        with self._read() as c:
            return queries.file_artifact(c, path, digest)

    # -------------------------------------------------------------- the engine's writes

    def write_tasks(self, run_id: str, fresh: Iterable[list[dict[str, Any]]],
                    reset: list[dict[str, Any]], pending: str, n_tasks: int,
                    copied: tuple[str, list[int]] | None = None) -> None:
        """New task rows (in chunks, all in this one transaction), and rows of a resumed run
        reset to ``pending`` (see :func:`corral.store.writes.write_tasks`); ``copied``: a run
        and the indices of its rows that this run takes over as cached (see
        :func:`corral.store.writes.copy_tasks`)."""
        with self.transaction() as c:
            queries.drop_summary(c, run_id)
            if copied:
                writes.copy_tasks(c, run_id, copied[0], copied[1], TaskState.CACHED.value)
            writes.write_tasks(c, run_id, fresh, reset, pending, n_tasks)

    def previous_task_rows(self, run_id: str, n_tasks: int
                           ) -> tuple[str, dict[int, tuple[Any, ...]]] | None:
        """The newest earlier run of the same pipeline, file and parameters with as many tasks,
        and its rows (see :func:`corral.store.queries.previous_task_rows`)."""
        with self._read() as c:
            return queries.previous_task_rows(c, run_id, n_tasks)

    def replace_edges(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        with self.transaction() as c:
            writes.replace_edges(c, run_id, rows)

    def add_edges(self, rows: list[dict[str, Any]]) -> None:
        with self.transaction() as c:
            writes.add_edges(c, rows)

    def write_batch(self, results: list[dict[str, Any]], new_attempts: dict[str, dict[str, Any]],
                    artifacts: list[dict[str, Any]], task_updates: dict[int, dict[str, Any]],
                    attempt_updates: dict[str, dict[str, Any]],
                    new_tasks: writes.NewTasks | None = None) -> dict[int, int]:
        """One engine iteration's writes in one transaction (the blobs are on disk first); the
        ids of the ``new_tasks`` rows by task index (see :class:`writes.NewTasks`)."""
        with self.transaction() as c:
            return writes.write_batch(c, results, new_attempts, artifacts, task_updates,
                                      attempt_updates, new_tasks)

    def engine_alive(self, run: Mapping[str, Any]) -> bool:
        if not run.get("engine_pid"):
            return False
        if run.get("engine_host") == socket.gethostname():
            return pid_alive(int(run["engine_pid"]))
        return (time.time() - (run.get("heartbeat_at") or 0)) < HEARTBEAT_STALE

    def heartbeat(self, run_id: str) -> str:
        """Record that the engine is alive; return the run's control request."""
        with self.transaction() as c:
            c.execute(
                t.runs.update().where(t.runs.c.id == run_id).values(heartbeat_at=time.time())
            )
            control = c.execute(sa.select(t.runs.c.control).where(t.runs.c.id == run_id)).scalar()
        return str(control or "none")

    # ------------------------------------------------------------------ tasks

    def task_ids(self, run_id: str, names: Sequence[str] | None = None
                 ) -> dict[str, dict[str, Any]]:
        """``{task name: {id, name, state, key, attempts}}`` of a run's rows (only of ``names``
        when given: a few tasks added to a big run)."""
        cols = (t.tasks.c.id, t.tasks.c.name, t.tasks.c.state, t.tasks.c.key, t.tasks.c.attempts)
        with self._read() as c:
            return {r.name: dict(r._mapping) for r in self._rows_named(c, cols, run_id, names)}

    def task_row_ids(self, run_id: str, first: int | None = None) -> dict[str, int]:
        """``{task name: row id}`` of a run's rows (of those at index ``first`` and after, when
        given: the tasks just added to a big run)."""
        tk = t.tasks.c
        q = sa.select(tk.name, tk.id).where(tk.run_id == run_id)
        if first is not None:
            q = q.where(tk.idx >= first)
        with self._read() as c:
            return {name: row_id for name, row_id in c.execute(q)}

    @staticmethod
    def _rows_named(c: Connection, cols: Sequence[Any], run_id: str,
                    names: Sequence[str] | None) -> Iterator[Any]:
        q = sa.select(*cols).where(t.tasks.c.run_id == run_id)
        if names is None:
            yield from c.execute(q)
            return
        for start in range(0, len(names), NAMES_PER_QUERY):
            chunk = names[start:start + NAMES_PER_QUERY]
            yield from c.execute(q.where(t.tasks.c.name.in_(chunk)))

    def tasks(self, run_id: str, name: str | None = None) -> list[TaskRow]:
        q = sa.select(t.tasks).where(t.tasks.c.run_id == run_id).order_by(t.tasks.c.idx)
        if name is not None:
            q = q.where(t.tasks.c.name == name)
        with self._read() as c:
            return [cast(TaskRow, dict(r)) for r in c.execute(q).mappings()]

    def find_task(self, run_id: str, name: str) -> TaskRow:
        """A task of a run by exact name, or by unique prefix of its name."""
        rows = self.tasks(run_id, name)
        if not rows:
            rows = [r for r in self.tasks(run_id) if r["name"].startswith(name)]
        if len(rows) != 1:
            what = "no task" if not rows else f"{len(rows)} tasks"
            raise RunNotFound(
                f"{what} of run {run_id} match {name!r}; see the names with `corral status {run_id}`"
            )
        return rows[0]

    def attempts(self, run_id: str, task_id: int | None = None) -> list[AttemptRow]:
        q = sa.select(t.attempts).where(t.attempts.c.run_id == run_id)
        if task_id is not None:
            q = q.where(t.attempts.c.task_id == task_id)
        with self._read() as c:
            rows = c.execute(q.order_by(t.attempts.c.number)).mappings()
            return [cast(AttemptRow, dict(r)) for r in rows]

    def task_groups(self, run_id: str) -> list[dict[str, Any]]:
        """A big run's tasks by group: an ended run's summary, or counted in SQL (see
        :func:`queries.task_groups`)."""
        with self._read() as c:
            return queries.summary(c, run_id) or queries.task_groups(c, run_id)

    def task_page(self, run_id: str, offset: int, limit: int
                  ) -> tuple[list[TaskRow], list[AttemptRow]]:
        """The task rows of a run from the ``offset``-th in task order, at most ``limit`` (0:
        all), with their attempts."""
        with self._read() as c:
            tasks = queries.task_page(c, run_id, offset, limit)
            attempts = queries.attempts_of(c, [r["id"] for r in tasks])
        return [cast(TaskRow, r) for r in tasks], [cast(AttemptRow, a) for a in attempts]

    def tasks_at(self, run_id: str, idxs: Iterable[int] = (),
                 failed_in: Iterable[str] = ()) -> tuple[list[TaskRow], list[AttemptRow]]:
        """Some task rows of a run (at ``idxs``, and the failed ones of the groups
        ``failed_in``) with their attempts."""
        with self._read() as c:
            tasks = queries.tasks_at(c, run_id, idxs, failed_in)
            attempts = queries.attempts_of(c, [r["id"] for r in tasks])
        return [cast(TaskRow, r) for r in tasks], [cast(AttemptRow, a) for a in attempts]

    def inflight_attempts(self, run_id: str) -> list[dict[str, Any]]:
        q = sa.select(t.attempts).where(
            t.attempts.c.run_id == run_id, t.attempts.c.state.in_(_values(LIVE_ATTEMPT_STATES))
        )
        with self._read() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def mark_cancelled(self, run_id: str) -> None:
        """After a cancel without an engine: unfinished tasks and live attempts become
        cancelled (the rows that may, by the transition table of :mod:`corral.states`)."""
        now = time.time()
        with self.transaction() as c:
            queries.drop_summary(c, run_id)
            c.execute(t.tasks.update().where(
                t.tasks.c.run_id == run_id, t.tasks.c.state.in_(_values(UNFINISHED_TASK_STATES))
            ).values(state=TaskState.CANCELLED.value, finished_at=now))
            c.execute(t.attempts.update().where(
                t.attempts.c.run_id == run_id, t.attempts.c.state.in_(_values(LIVE_ATTEMPT_STATES))
            ).values(state=AttemptState.CANCELLED.value, ended_at=now))

    def uncounted_attempts(self, run_id: str) -> dict[int, int]:
        """Per task id, attempts that never really ran: withdrawn by a pause, or abandoned by
        an engine that stopped. They do not count toward retries or resources-by-attempt."""
        q = (
            sa.select(t.attempts.c.task_id, sa.func.count())
            .where(t.attempts.c.run_id == run_id,
                   t.attempts.c.state.in_(_values(UNCOUNTED_ATTEMPT_STATES)))
            .group_by(t.attempts.c.task_id)
        )
        with self._read() as c:
            return {int(r[0]): int(r[1]) for r in c.execute(q)}

    def edges(self, run_id: str) -> list[tuple[int, int]]:
        q = sa.select(t.edges.c.parent, t.edges.c.child).where(t.edges.c.run_id == run_id)
        with self._read() as c:
            return [(r.parent, r.child) for r in c.execute(q)]

    # ------------------------------------------------------------------ results

    def completed(self, keys: Iterable[str]) -> dict[str, dict[str, str]]:
        """Stored results among ``keys``, with their recorded output files ({} for none):
        ``{key: {path: digest}}``, in one pass over the results table."""
        with self._read() as c:
            return queries.completed(c, list(keys))

    def result_row(self, key: str) -> dict[str, Any] | None:
        with self._read() as c:
            row = c.execute(sa.select(t.results).where(t.results.c.key == key)).mappings().first()
        return dict(row) if row else None

    def load_value(self, key: str) -> bytes:
        row = self.result_row(key)
        if row is None:
            raise StoreError(f"no stored result for key {key}; rerun with --force for that task")
        if row["value"] is not None:
            return bytes(row["value"])
        return self.cas.get_bytes(row["digest"])

    def value_record(self, data: bytes, deferred: bool = False) -> dict[str, Any]:
        """Columns for storing a pickled value: inline when small, else in the CAS (with
        ``deferred``, durable only after ``cas.sync()``)."""
        if len(data) <= INLINE_LIMIT:
            return {"value": data, "digest": None, "size": len(data)}
        return {"value": None, "digest": self.cas.put_bytes(data, deferred), "size": len(data)}

    # ------------------------------------------------------------------ artifacts

    def artifacts_for_path(self, path: Path) -> list[dict[str, Any]]:
        q = (
            sa.select(t.artifacts)
            .where(t.artifacts.c.path == str(path.resolve()))
            .order_by(t.artifacts.c.created_at.desc())
        )
        with self._read() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        q = sa.select(t.artifacts).where(t.artifacts.c.run_id == run_id)
        with self._read() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def task_by_id(self, task_id: int) -> dict[str, Any] | None:
        with self._read() as c:
            row = c.execute(sa.select(t.tasks).where(t.tasks.c.id == task_id)).mappings().first()
        return dict(row) if row else None

    def producer_of_key(self, key: str) -> dict[str, Any] | None:
        """The most recent task row that ran (not reused) and produced the result ``key``."""
        q = (
            sa.select(t.tasks)
            .where(t.tasks.c.key == key, t.RAN)  # the partial index ix_tasks_key
            .order_by(t.tasks.c.finished_at.desc())
            .limit(1)
        )
        with self._read() as c:
            row = c.execute(q).mappings().first()
        return dict(row) if row else None

    # ------------------------------------------------------------------ garbage collection

    def collect_garbage(self, keep_runs: int | None = None, dry_run: bool = False,
                        min_age: float = GC_MIN_AGE) -> dict[str, int]:
        """Delete results not used by the newest ``keep_runs`` runs (all kept if None; runs not
        finished — running, paused, detached, interrupted — are always kept), and CAS blobs no
        longer referenced that were last written or reused more than ``min_age`` seconds ago
        (a blob is written just before the row that refers to it is committed, so a younger
        one may belong to a run in progress). Returns counts and bytes freed."""
        listed = self._old_blobs(min_age)
        with self.transaction() as c:
            removed_results = 0
            if keep_runs is not None:
                removed_results = self._drop_old_runs(c, keep_runs, dry_run)
            referenced = {r[0] for r in c.execute(sa.select(t.results.c.digest)) if r[0]}
            outputs: set[str] = set()
            for row in c.execute(sa.select(t.results.c.outputs)):
                outputs.update((row[0] or {}).values())
            referenced |= outputs
            referenced.update(r[0] for r in c.execute(sa.select(t.artifacts.c.digest)))
        freed = blobs = 0
        for digest in listed:
            if digest not in referenced:
                blobs += 1
                freed += self.cas.path(digest).stat().st_size if dry_run else self.cas.remove(digest)
        # outputs stay where their tasks wrote them: the store holds a clone or a small copy
        # of some (restored when deleted), the digest only of the others (their tasks rerun)
        kept = sum(1 for d in outputs if self.cas.path(d).exists())
        return {"results": removed_results, "blobs": blobs, "bytes": freed,
                "outputs": len(outputs), "outputs_kept": kept}

    def _old_blobs(self, min_age: float) -> list[str]:
        cutoff = time.time() - min_age
        old = []
        for digest in self.cas.digests():
            try:
                if self.cas.path(digest).stat().st_mtime <= cutoff:
                    old.append(digest)
            except FileNotFoundError:
                continue
        return old

    @staticmethod
    def _drop_old_runs(c: Connection, keep_runs: int, dry_run: bool) -> int:
        """Forget finished runs older than the newest ``keep_runs`` and the results only they
        used; returns how many results go."""
        newest = sa.select(t.runs.c.id).order_by(t.runs.c.created_at.desc()).limit(keep_runs)
        keep = [r[0] for r in c.execute(newest)]
        keep += [r[0] for r in c.execute(
            sa.select(t.runs.c.id).where(t.runs.c.state.not_in(_values(TERMINAL_RUN_STATES))))]
        used = sa.select(t.tasks.c.key).where(t.tasks.c.run_id.in_(keep))
        stale = sa.select(t.results.c.key).where(t.results.c.key.not_in(used))
        removed = len(c.execute(stale).all())
        if not dry_run:
            c.execute(t.results.delete().where(t.results.c.key.not_in(used)))
            old = sa.select(t.runs.c.id).where(t.runs.c.id.not_in(keep))
            c.execute(t.artifacts.delete().where(t.artifacts.c.run_id.in_(old)))
            c.execute(t.runs.delete().where(t.runs.c.id.not_in(keep)))
        return removed

    # ------------------------------------------------------------------ the dashboard's lists

    def runs_page(self, f: listing.RunFilter, limit: int = 50,
                  offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """A page of runs matching ``f``, newest first, and the total (see :mod:`.listing`)."""
        with self._read() as c:
            return listing.runs_page(c, f, limit, offset)

    def task_counts(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Tasks counted by state, per run of ``run_ids``."""
        with self._read() as c:
            return listing.task_counts(c, run_ids)

    def run_facets(self) -> dict[str, list[str]]:
        """The owners and pipelines the runs list can be filtered by."""
        with self._read() as c:
            return listing.facets(c)


def _values(states: frozenset[AttemptState] | frozenset[TaskState] | frozenset[RunState]) -> list[str]:
    """A set of states as the sorted column values an ``IN`` clause compares with."""
    return sorted(state.value for state in states)
