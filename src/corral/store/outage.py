"""Riding out a database server that goes away (a restart, a fail-over, a network blip).

A transaction on a server database runs on a :class:`ReplayingConnection`: it remembers the
statements of the transaction and, when the connection is lost, reconnects with back-off and
replays them on a new connection before it goes on, so the caller (the engine's batched writes)
neither notices nor redoes anything; a transaction that was lost was not committed, and the
replay commits it once. If the server stays away longer than :func:`outage_limit` seconds
(``CORRAL_DB_OUTAGE_LIMIT``), the store gives up with one :class:`StoreError` line; what was
committed stays, and the same command resumes from it. SQLite has no server to lose: it does
not use this (its failures, a full disk most often, stop the run at once).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RootTransaction

from corral.errors import StoreError, UsageError

log = logging.getLogger("corral")

OUTAGE_LIMIT_ENV = "CORRAL_DB_OUTAGE_LIMIT"
DEFAULT_OUTAGE_LIMIT = 300.0
"""Seconds the engine waits for a database server that went away before it stops."""
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0


def outage_limit() -> float:
    """The limit from ``CORRAL_DB_OUTAGE_LIMIT`` (seconds), else :data:`DEFAULT_OUTAGE_LIMIT`."""
    text = os.environ.get(OUTAGE_LIMIT_ENV, "").strip()
    if not text:
        return DEFAULT_OUTAGE_LIMIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UsageError(f"{OUTAGE_LIMIT_ENV}={text!r} is not a number of seconds; set it to "
                         f"e.g. 300 (how long to wait for the database server), or unset it")
    return value


class Outage:
    """The waiting policy of one store: back-off between attempts, one warning when the server
    goes away and one when it is back, and the limit. Once the limit was passed the store does
    not wait again (the clean-up after the error fails fast), until a connection succeeds."""

    def __init__(self, where: str, limit: float) -> None:
        self.where, self.limit = where, limit
        self.since: float | None = None
        self.gave_up = False
        self._attempt = 0

    def wait(self, exc: BaseException) -> None:
        """After a failed attempt: sleep before the next, or raise StoreError past the limit."""
        now = time.monotonic()
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if self.since is None:
            self.since, self._attempt = now, 0
            if not self.gave_up and self.limit > 0:
                log.warning("the state store %s is unreachable (%s); retrying for up to %g s",
                            self.where, text, self.limit)
        if self.gave_up or now - self.since >= self.limit:
            self.gave_up = True
            raise StoreError(
                f"the state store {self.where} has been unreachable for {now - self.since:.0f} s "
                f"(limit {self.limit:g} s, {OUTAGE_LIMIT_ENV}): {text}; run the same command "
                "again once it is back: what finished is kept") from exc
        time.sleep(min(BACKOFF_FIRST * 2 ** self._attempt, BACKOFF_MAX,
                       max(self.limit - (now - self.since), 0.01)))
        self._attempt += 1

    def recovered(self) -> None:
        if self.since is not None:
            log.warning("the state store %s is back after %.1f s", self.where,
                        time.monotonic() - self.since)
        self.since, self.gave_up = None, False


def connection_lost(exc: sa.exc.DBAPIError) -> bool:
    """Whether a statement failed because the connection or the server went away."""
    return bool(exc.connection_invalidated)


class ReplayingConnection:
    """One transaction that survives a lost connection (see the module's docstring).

    It offers what the store's and the engine's transactions use of a SQLAlchemy
    :class:`Connection` — ``execute``, ``exec_driver_sql``, ``dialect`` — and hands anything else
    to the current connection (not replayed)."""

    def __init__(self, engine: Engine, outage: Outage) -> None:
        self._engine, self._outage = engine, outage
        self._log: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._conn: Connection | None = None
        self._tx: RootTransaction | None = None
        self._reopen()

    @property
    def dialect(self) -> sa.Dialect:
        return self._engine.dialect

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("execute", args, kwargs)

    def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("exec_driver_sql", args, kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("scalar", args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        def call() -> Any:
            assert self._conn is not None
            return getattr(self._conn, name)(*args, **kwargs)

        result = self._until_done(call)
        self._log.append((name, args, kwargs))
        return result

    def commit(self) -> None:
        def commit() -> None:
            assert self._tx is not None
            self._tx.commit()

        self._until_done(commit)

    def _until_done(self, action: Callable[[], Any]) -> Any:
        """``action()``; a lost connection is waited out (within the outage limit), reopened
        with this transaction's statements replayed, and ``action`` tried again."""
        while True:
            try:
                result = action()
            except sa.exc.DBAPIError as exc:
                if not connection_lost(exc):
                    raise
                self._outage.wait(exc)
                self._reopen()
                continue
            self._outage.recovered()
            return result

    def close(self) -> None:
        """Roll back what was not committed and give the connection back."""
        if self._conn is not None:
            try:
                self._conn.close()
            except sa.exc.DBAPIError:
                pass  # a connection that is gone has nothing to roll back
            self._conn = self._tx = None

    def _reopen(self) -> None:
        """A new connection in a new transaction with the statements so far replayed: retried
        with back-off while the server cannot be reached, up to the outage limit."""
        self.close()
        while True:
            conn = None
            try:
                conn = self._engine.connect()
                tx = conn.begin()
                for name, args, kwargs in self._log:
                    getattr(conn, name)(*args, **kwargs)
            except sa.exc.DBAPIError as exc:
                if conn is not None:
                    _close_quietly(conn)
                if not (connection_lost(exc) or isinstance(exc, sa.exc.OperationalError)):
                    raise
                self._outage.wait(exc)
                continue
            self._conn, self._tx = conn, tx
            return


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except sa.exc.DBAPIError:
        pass
