"""Running scheduler commands on this machine (the login node): ``subprocess`` with argv lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from corral.errors import CommandError
from corral.transport.base import CommandResult, Transport


class LocalTransport(Transport):
    """The scheduler's commands are on ``PATH`` here and the work directory is a local path."""

    shared_filesystem = True

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = dict(env or {})
        """Variables added to every command's environment (e.g. ``SGE_ROOT``)."""

    def run(
        self,
        argv: Sequence[str],
        *,
        input: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` (never through a shell); ``CommandError`` on failure or timeout."""
        args = [str(a) for a in argv]
        full_env = {**os.environ, **self._env, **(env or {})}
        try:
            proc = subprocess.run(  # noqa: S603 - argv list, no shell
                args,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=full_env,
                check=False,
            )
        except FileNotFoundError as exc:
            raise CommandError(args, 127, "", f"{args[0]}: command not found ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            out = _text(exc.stdout)
            err = _text(exc.stderr) + f"\ntimed out after {timeout:g} s"
            raise CommandError(args, -9, out, err) from exc
        result = CommandResult(args, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise CommandError(args, proc.returncode, proc.stdout, proc.stderr)
        return result

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def read_bytes(self, path: str) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def realpath(self, path: str) -> str:
        return os.path.realpath(os.path.expanduser(path))

    def remove_trees(self, paths: Sequence[str]) -> None:
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def remove_dir(self, path: str) -> bool:
        try:
            os.rmdir(path)
        except OSError:
            return False
        return True

    def listdir(self, path: str) -> list[str] | None:
        try:
            return os.listdir(path)
        except (FileNotFoundError, NotADirectoryError):
            return None


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


__all__ = ["LocalTransport"]
