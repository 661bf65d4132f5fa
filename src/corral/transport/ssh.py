"""SSH transport: run commands and move files on another machine, over one reused connection.

``SSHTransport`` implements :class:`corral.transport.base.Transport` on top of ``asyncssh``.
An event loop runs in a private daemon thread; the public API is synchronous, so batch executors
and the SSH executor use it like ``LocalTransport``.

- Commands are argv lists. They cross SSH as one command line, so every element is quoted with
  :func:`shlex.quote` (the remote login shell must be POSIX: sh, bash, dash, zsh, ksh).
- One connection per transport; every command and the SFTP session are channels of it.
- A connection found dropped (closed, lost, channel refused) is re-opened once and the operation
  retried once. Callers whose commands must not run twice make them idempotent.
- Files move over SFTP. ``write_bytes`` and ``put`` are atomic: a temporary name, then a rename.
  A ``put_many`` batch of :data:`~corral.transport.progress.PROGRESS_MIN` bytes or more, and a
  ``get_many`` of files that large, show a progress line on standard error when it is a
  terminal (:mod:`corral.transport.progress`).
- Host keys are checked against ``known_hosts`` (default ``~/.ssh/known_hosts``). Checking is off
  only when the setting is explicitly ``None`` (or the string ``"none"``), and a warning is logged.

Errors: connection failures and failed commands raise :class:`~corral.errors.CommandError`
(transient; a connection failure reports exit code 255 like OpenSSH); refused authentication or an
unknown host key raise :class:`~corral.errors.ExecutorError` with what to fix.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import posixpath
import shlex
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import asyncssh

from corral.errors import CommandError, ConfigError, ExecutorError
from corral.transport.base import CommandResult, Transport
from corral.transport.progress import Advance, LazyProgress, batch_size, transfer_progress

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
_DISABLED = ("none", "off", "ignore")
#: Errors meaning "the connection is gone": reconnect once and retry.
_DROPPED: tuple[type[BaseException], ...] = (
    asyncssh.ConnectionLost,
    asyncssh.ChannelOpenError,
    BrokenPipeError,
    ConnectionResetError,
)


@dataclass(frozen=True)
class SSHSettings:
    """Where and how to connect. Built by :func:`parse_transport_url`."""

    host: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    """Private key file (default: the SSH agent and ``~/.ssh/id_*``)."""
    known_hosts: str | None = DEFAULT_KNOWN_HOSTS
    """known_hosts file; ``None`` disables host key checking (tests only; logged as a warning)."""
    connect_timeout: float = 15.0
    keepalive_interval: float = 30.0
    """Seconds between keep-alives; a connection missing 3 of them counts as dropped."""
    shared_filesystem: bool = False
    """Whether remote paths are the same files as local ones (then ``put``/``get`` do nothing)."""

    @property
    def label(self) -> str:
        """``user@host:port`` for messages and native ids."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}:{self.port}"


_OPTION_NAMES = tuple(f.name for f in fields(SSHSettings) if f.name not in ("host", "port", "user"))


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes", "on")
    raise ConfigError(f"ssh option {name}={value!r} must be true or false")


def _as_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or number <= 0:
        raise ConfigError(f"ssh option {name}={value!r} must be a positive number of seconds")
    return number


def _known_hosts(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.lower() in _DISABLED):
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"ssh option known_hosts={value!r} must be a file path, or 'none' to disable checking")
    return value


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Validate connection options (see :class:`SSHSettings`); unknown keys are a ConfigError."""
    unknown = sorted(set(options) - set(_OPTION_NAMES))
    if unknown:
        raise ConfigError(f"unknown ssh option(s) {', '.join(unknown)}; valid options are {', '.join(_OPTION_NAMES)}")
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name == "identity_file":
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"ssh option identity_file={value!r} must be a file path")
            out[name] = value
        elif name == "known_hosts":
            out[name] = _known_hosts(value)
        elif name == "shared_filesystem":
            out[name] = _as_bool(name, value)
        else:
            out[name] = _as_float(name, value)
    return out


def parse_transport_url(url: str, defaults: Mapping[str, Any] | None = None) -> SSHSettings:
    """Settings from ``ssh://[user@]host[:port][?option=value&...]``.

    Options: ``identity_file``, ``known_hosts`` (a path, or ``none`` to disable checking),
    ``connect_timeout``, ``keepalive_interval``, ``shared_filesystem``. They come from
    ``defaults`` (e.g. a profile's settings), overridden by the URL's query string.
    A bare ``[user@]host[:port]`` is accepted too.
    """
    text = url.strip()
    if "://" not in text:
        text = "ssh://" + text
    parts = urlsplit(text)
    if parts.scheme != "ssh":
        raise ConfigError(f"transport {url!r} is not an ssh:// URL; write ssh://user@host:22")
    try:
        port = parts.port or 22
    except ValueError:
        raise ConfigError(f"transport {url!r} has an invalid port; write ssh://user@host:22") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.password is not None:
        raise ConfigError(f"transport {url!r} is not of the form ssh://user@host:port (no path, no password)")
    merged: dict[str, Any] = dict(defaults or {})
    merged.update(parse_qsl(parts.query, keep_blank_values=True))
    return SSHSettings(host=parts.hostname, port=port, user=parts.username or None, **check_options(merged))


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The one command line sent over SSH for ``argv``: each element quoted for a POSIX shell."""
    if not argv:
        raise ValueError("an empty argv cannot be run")
    words = list(argv)
    if env:
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    return shlex.join(words)


def _tmp_name(path: str) -> str:
    head, tail = posixpath.split(path)
    return posixpath.join(head, f".{tail}.{uuid.uuid4().hex[:12]}.tmp")


class SSHTransport(Transport):
    """A :class:`Transport` over SSH. No I/O happens before the first call."""

    def __init__(self, settings: SSHSettings) -> None:
        self.settings = settings
        self.shared_filesystem = settings.shared_filesystem
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str, defaults: Mapping[str, Any] | None = None) -> SSHTransport:
        """A transport for ``ssh://user@host:port`` (see :func:`parse_transport_url`)."""
        return cls(parse_transport_url(url, defaults))

    def __repr__(self) -> str:
        return f"SSHTransport({self.settings.label!r})"

    # ------------------------------------------------------------------ loop and connection

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"corral-ssh-{self.settings.host}", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _call(self, make: Callable[[], Awaitable[T]], timeout: float, what: Sequence[str]) -> T:
        """Run a coroutine on the transport's loop and wait for it (bounded by ``timeout``)."""
        loop = self._ensure_loop()

        async def runner() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(runner(), loop)
        limit = timeout + self.settings.connect_timeout + 5.0
        # not future.result(limit): asyncssh's own TimeoutError is a builtin TimeoutError too
        done, _ = concurrent.futures.wait([future], limit)
        if not done:
            future.cancel()
            raise self._error(what, 124, f"timed out after {limit:.0f}s")
        return future.result()

    def _error(self, argv: Sequence[str], code: int, message: str) -> CommandError:
        return CommandError(["ssh", self.settings.label, *argv], code, "", message)

    def _connect_options(self) -> dict[str, Any]:
        s = self.settings
        opts: dict[str, Any] = {
            "port": s.port,
            "connect_timeout": s.connect_timeout,
            "keepalive_interval": s.keepalive_interval,
            "keepalive_count_max": 3,
        }
        if s.user:
            opts["username"] = s.user
        if s.identity_file:
            opts["client_keys"] = [_existing("identity_file", s.identity_file, "")]
        if s.known_hosts is None:
            log.warning("host key checking is disabled for %s (known_hosts=None)", s.label)
            opts["known_hosts"] = None
        else:
            fix = f"; create it with ssh-keyscan -p {s.port} {s.host} >> {s.known_hosts}"
            opts["known_hosts"] = _existing("known_hosts", s.known_hosts, fix)
        return opts

    async def _connection(self) -> asyncssh.SSHClientConnection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            conn = self._conn
            if conn is not None and not conn.is_closed():
                return conn
            self._conn, self._sftp = None, None
            self._conn = await self._open()
            return self._conn

    async def _open(self) -> asyncssh.SSHClientConnection:
        s = self.settings
        try:
            return await asyncssh.connect(s.host, **self._connect_options())
        except asyncssh.PermissionDenied as exc:
            raise ExecutorError(
                f"ssh to {s.label} refused authentication ({exc.reason}); "
                "check the user and identity_file, and that the key is in authorized_keys"
            ) from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            raise ExecutorError(
                f"the host key of {s.label} is not trusted ({exc.reason}); add it to "
                f"{s.known_hosts} (ssh-keyscan -p {s.port} {s.host}) or set known_hosts"
            ) from exc
        except (OSError, asyncssh.Error) as exc:  # TimeoutError is an OSError
            raise self._error(["<connect>"], 255, f"cannot connect: {exc}") from exc

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        conn = await self._connection()
        if self._sftp is None:
            self._sftp = await conn.start_sftp_client()
        return self._sftp

    async def _drop(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            conn.close()

    async def _retrying(self, op: Callable[[], Awaitable[T]], what: Sequence[str]) -> T:
        """Run ``op``; on a dropped connection reconnect once and run it again."""
        try:
            return await op()
        except _DROPPED as exc:
            log.info("ssh connection to %s dropped (%s); reconnecting", self.settings.label, exc)
            await self._drop()
        try:
            return await op()
        except _DROPPED as exc:
            await self._drop()
            raise self._error(what, 255, f"connection lost twice: {exc}") from exc

    # ------------------------------------------------------------------ commands

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` remotely (each element quoted); raise ``CommandError`` if it fails."""
        command = remote_command(argv, env)

        async def op() -> asyncssh.SSHCompletedProcess:
            conn = await self._connection()
            return await conn.run(command, input=input, check=False, timeout=timeout)

        try:
            proc = self._call(lambda: self._retrying(op, argv), timeout, argv)
        except asyncssh.TimeoutError as exc:
            raise CommandError(
                list(argv),
                124,
                _text(exc.stdout),
                f"{_text(exc.stderr)}\ntimed out after {timeout}s",
            ) from exc
        except asyncssh.Error as exc:
            raise self._error(argv, 255, str(exc)) from exc
        code = proc.exit_status
        if code is None or code < 0:
            signal = proc.exit_signal[0] if proc.exit_signal else "unknown"
            code = 255
            stderr = f"{_text(proc.stderr)}\nkilled by signal {signal}"
        else:
            stderr = _text(proc.stderr)
        result = CommandResult(list(argv), code, _text(proc.stdout), stderr)
        if check and code != 0:
            raise CommandError(result.argv, code, result.stdout, result.stderr)
        return result

    # ------------------------------------------------------------------ files

    def _sftp_call(
        self,
        what: str,
        path: str,
        fn: Callable[[asyncssh.SFTPClient], Awaitable[T]],
        timeout: float = 300.0,
    ) -> T:
        async def op() -> T:
            return await fn(await self._sftp_client())

        argv = ["sftp", what, path]
        try:
            return self._call(lambda: self._retrying(op, argv), timeout, argv)
        except asyncssh.SFTPError as exc:
            raise self._error(argv, 1, f"{what} {path}: {exc.reason}") from exc
        except OSError as exc:
            raise self._error(argv, 1, f"{what} {path}: {exc}") from exc

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write ``data`` to ``path`` atomically (temporary name, rename), creating parents."""

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await _makedirs(sftp, posixpath.dirname(path))
            tmp = _tmp_name(path)
            attrs = asyncssh.SFTPAttrs(permissions=mode)
            async with sftp.open(tmp, "wb", attrs) as fh:
                await fh.write(data)
            await _replace(sftp, tmp, path)

        self._sftp_call("write", path, op)

    def read_bytes(self, path: str) -> bytes | None:
        async def op(sftp: asyncssh.SFTPClient) -> bytes | None:
            try:
                async with sftp.open(path, "rb") as fh:
                    data: bytes = await fh.read()
                    return data
            except asyncssh.SFTPNoSuchFile:
                return None

        return self._sftp_call("read", path, op)

    def exists(self, path: str) -> bool:
        async def op(sftp: asyncssh.SFTPClient) -> bool:
            return bool(await sftp.exists(path))

        return self._sftp_call("stat", path, op)

    def makedirs(self, path: str) -> None:
        async def op(sftp: asyncssh.SFTPClient) -> None:
            await _makedirs(sftp, path)

        self._sftp_call("mkdir", path, op)

    def realpath(self, path: str) -> str:
        """The absolute remote path of ``path`` (``~/x`` and relative paths start at home)."""
        if path == "~" or path.startswith("~/"):
            path = "." + path[1:]

        async def op(sftp: asyncssh.SFTPClient) -> str:
            return str(await sftp.realpath(path, check=asyncssh.FXRP_NO_CHECK))

        return self._sftp_call("realpath", path, op)

    def remove_trees(self, paths: Sequence[str]) -> None:
        """Remove remote directories (or files) recursively, in one SFTP batch; missing ones
        are no error."""
        if not paths:
            return

        async def op(sftp: asyncssh.SFTPClient) -> None:
            await asyncio.gather(*(_remove_tree(sftp, p) for p in paths))

        self._sftp_call("rmtree", paths[0], op)

    def remove_dir(self, path: str) -> bool:
        """Remove an empty remote directory; ``False`` if it is missing or not empty."""

        async def op(sftp: asyncssh.SFTPClient) -> bool:
            try:
                await sftp.rmdir(path)
            except asyncssh.SFTPError:
                return False
            return True

        return self._sftp_call("rmdir", path, op)

    def listdir(self, path: str) -> list[str] | None:
        """Names in a remote directory; ``None`` if it does not exist."""

        async def op(sftp: asyncssh.SFTPClient) -> list[str] | None:
            try:
                names = await sftp.listdir(path)
            except asyncssh.SFTPNoSuchFile:
                return None
            return [str(n) for n in names if n not in (".", "..")]

        return self._sftp_call("listdir", path, op)

    def put(self, local: str, remote: str) -> None:
        """Copy a local file (atomically) or directory (recursively) to the remote side."""
        if not self.shared_filesystem:
            self.put_many([(local, remote)])

    def get(self, remote: str, local: str) -> None:
        """Copy a remote file to the local side (atomically); a missing file is an error."""
        if not self.shared_filesystem and not self.get_many([(remote, local)]):
            raise self._error(["sftp", "get", remote], 1, f"get {remote}: no such file")

    def put_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Copy several ``(local, remote)`` paths at once (one SFTP session, pipelined)."""
        if not pairs:
            return
        total = batch_size([loc for loc, _ in pairs])
        what = f"corral: sending {len(pairs)} file(s) to {self.settings.host}"
        with transfer_progress(what, total) as advance:

            async def op(sftp: asyncssh.SFTPClient) -> None:
                await asyncio.gather(*(_put_one(sftp, loc, rem, advance) for loc, rem in pairs))

            self._sftp_call("put", pairs[0][1], op, timeout=max(300.0, total / 2**20))

    def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Copy several ``(remote, local)`` files; returns the remote paths that existed."""
        if not pairs:
            return []

        with LazyProgress(f"corral: fetching from {self.settings.host}") as progress:

            async def op(sftp: asyncssh.SFTPClient) -> list[str]:
                got = await asyncio.gather(*(_get_one(sftp, rem, loc, progress) for rem, loc in pairs))
                return [rem for (rem, _), ok in zip(pairs, got, strict=True) if ok]

            return self._sftp_call("get", pairs[0][0], op)

    def close(self) -> None:
        """Close the connection and stop the event loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop, self._thread, self._connecting = None, None, None
        if loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._drop(), loop).result(5.0)
        except (TimeoutError, RuntimeError):
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5.0)
        loop.close()


def _existing(option: str, path: str, fix: str) -> str:
    """``path`` with ``~`` expanded; a ConfigError if the file does not exist."""
    full = os.path.expanduser(path)
    if not os.path.isfile(full):
        raise ConfigError(f"ssh option {option}: file {path} does not exist{fix}")
    return full


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


async def _makedirs(sftp: asyncssh.SFTPClient, path: str) -> None:
    if path and path not in (".", "/"):
        await sftp.makedirs(path, exist_ok=True)


async def _replace(sftp: asyncssh.SFTPClient, tmp: str, path: str) -> None:
    """Rename ``tmp`` over ``path`` (POSIX rename when the server supports it)."""
    try:
        await sftp.posix_rename(tmp, path)
    except asyncssh.SFTPOpUnsupported:
        try:
            await sftp.remove(path)
        except asyncssh.SFTPNoSuchFile:
            pass
        await sftp.rename(tmp, path)


async def _remove_tree(sftp: asyncssh.SFTPClient, path: str) -> None:
    if path in ("", "/", "."):
        raise ValueError(f"refusing to remove {path!r}")
    try:
        if await sftp.isdir(path) and not await sftp.islink(path):
            await sftp.rmtree(path)
        else:
            await sftp.remove(path)
    except asyncssh.SFTPNoSuchFile:
        pass


async def _put_one(sftp: asyncssh.SFTPClient, local: str, remote: str, advance: Advance | None = None) -> None:
    await _makedirs(sftp, posixpath.dirname(remote))
    if Path(local).is_dir():
        await sftp.put(local, remote, recurse=True, preserve=True)
        return
    tmp = _tmp_name(remote)
    handler = None
    if advance is not None:
        def handler(src: bytes, dst: bytes, copied: int, total: int) -> None:
            advance(local, copied)
    # sparse=False: asyncssh drops a trailing hole (a truncated 70 MB file arrived empty)
    await sftp.put(local, tmp, preserve=True, sparse=False, progress_handler=handler)
    await _replace(sftp, tmp, remote)


async def _get_one(sftp: asyncssh.SFTPClient, remote: str, local: str, progress: LazyProgress) -> bool:
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(local).with_name(f".{Path(local).name}.{uuid.uuid4().hex[:12]}.tmp")

    def handler(src: bytes, dst: bytes, copied: int, total: int) -> None:
        progress.advance(remote, copied, total)

    try:
        await sftp.get(remote, str(tmp), progress_handler=handler)
    except asyncssh.SFTPNoSuchFile:
        return False
    os.replace(tmp, local)
    return True


__all__ = ["SSHSettings", "SSHTransport", "check_options", "parse_transport_url", "remote_command"]
