"""The transport seam: running commands and moving files on the machine that has the scheduler.

Batch executors never call ``subprocess`` themselves; they go through a :class:`Transport` so that
the same executor works on the login node (``LocalTransport``) or from a laptop over SSH
(``SSHTransport``). Every command is an argv list; a failure raises
:class:`corral.errors.CommandError` carrying argv, exit code, stdout and stderr.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class CommandResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Transport(ABC):
    """Runs commands and reads/writes files on the scheduler's side."""

    #: Whether paths are the same on both sides (no staging needed).
    shared_filesystem: bool = True

    @abstractmethod
    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv``; raise ``CommandError`` on non-zero exit when ``check``."""

    @abstractmethod
    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a file atomically (temporary name, then rename), creating parent dirs."""

    @abstractmethod
    def read_bytes(self, path: str) -> bytes | None:
        """Read a file; ``None`` if it does not exist."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abstractmethod
    def realpath(self, path: str) -> str:
        """The absolute path of ``path`` on that side (``~`` is that side's home)."""

    @abstractmethod
    def remove_trees(self, paths: Sequence[str]) -> None:
        """Remove directories (or files) recursively; missing ones are no error."""

    @abstractmethod
    def remove_dir(self, path: str) -> bool:
        """Remove an empty directory; ``False`` if it is missing or not empty."""

    def listdir(self, path: str) -> list[str] | None:
        """Names in a directory (without ``.`` and ``..``); ``None`` if it does not exist."""
        raise NotImplementedError(f"{type(self).__name__} cannot list directories")

    def put(self, local: str, remote: str) -> None:
        """Copy a local file to the remote side (no-op on a shared file system)."""
        return None

    def get(self, remote: str, local: str) -> None:
        """Copy a remote file to the local side (no-op on a shared file system)."""
        return None

    def put_many(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Copy several ``(local, remote)`` paths (no-op on a shared file system)."""
        for local, remote in pairs:
            self.put(local, remote)

    def get_many(self, pairs: Sequence[tuple[str, str]]) -> list[str]:
        """Copy several ``(remote, local)`` files; returns the remote paths that existed (on a
        shared file system nothing is copied)."""
        return [remote for remote, _ in pairs if self.exists(remote)]

    def close(self) -> None:
        """Release connections."""
        return None
