"""Running one attempt, wherever it runs: in a local pool process, or on a cluster node.

A payload is a pickled :class:`PythonPayload` or :class:`ShellPayload`. :func:`run_python` and
:func:`run_shell` execute it and return an :class:`AttemptResult`; :func:`run_attempt_dir` is the
file-based form used by batch, SSH and Dask executors: it reads ``payload.pkl`` in an attempt
directory and writes ``result.pkl`` and then the exit marker ``exit.json``, each atomically.
The marker lists the files a Python task returned (``Path`` values, also inside lists, tuples
and dicts), so executors that stage attempts on other machines can fetch them back. A value
larger than :data:`SPILL_MIN` is pickled straight into the file (hashed while written, see
:func:`spill_value`) and the marker's ``value`` gives its digest and size: an executor whose
engine can read that file hands the engine a :class:`StoredResult` for it
(:func:`stored_result`), so the value never passes through the engine's memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import mmap
import os
import pickle
import pickletools
import signal
import struct
import sys
import threading
import time
import traceback  # imported here: not at hand once memory ran out
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import cloudpickle

from corral.pickling import SCALARS, Pickler, dumps
from corral.worker.children import (
    become_subreaper,
    begin_attempt,
    end_children,
    keep_requested,
    kept_processes,
    stop_processes,
)
from corral.worker.metrics import Probe, TreeMonitor, descendants, hostname
from corral.worker.output import line_buffered

PAYLOAD_FILE = "payload.pkl"
RESULT_FILE = "result.pkl"
MARKER_FILE = "exit.json"
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
STARTED_FILE = "started.json"

SHELL_PREAMBLE = "set -eo pipefail\n"


@dataclass
class PythonPayload:
    """A Python task call: the pickled function (cached by digest in workers) and its arguments."""

    func_digest: str
    func: bytes
    args: bytes
    """cloudpickle of ``(args, kwargs)`` with futures already replaced by values."""


@dataclass
class ShellPayload:
    """A shell task: the command line (values already substituted and quoted)."""

    command: str
    outputs: list[str] = field(default_factory=list)
    """Declared output paths that must exist after a successful exit."""


@dataclass(frozen=True)
class ResultRef:
    """Stands for an upstream result not known when the payload was written (detached mode):
    the worker loads ``cloudpickle.loads(Path(path).read_bytes())`` in its place."""

    path: str


@dataclass(frozen=True)
class StoredResult:
    """Stands for a large return value the worker wrote to a file (``path``, complete and on
    disk) instead of sending it: the engine moves the file into its content store under
    ``digest`` (the digest of its bytes, as :func:`corral.hashing.digest_bytes` computes it)
    and never loads it. ``files`` are the files the value names (:func:`returned_files`)."""

    digest: str
    size: int
    path: str
    files: list[str]


SPILL_MIN = 64 * 1024
"""Pickled values larger than this are written to a file by the worker (the store keeps values
of this size in the CAS anyway: ``corral.store.store.INLINE_LIMIT``)."""
VALUE_FILE = "value.pkl"
HASH_ASIDE = 1 << 20
"""Buffers at least this large are hashed in another thread while they are written."""
OOB_MIN = 1 << 20
"""Contiguous buffers (of numpy arrays, bytearrays...) at least this large are laid out
page-aligned in a value file and memory-mapped when it is loaded (see :func:`spill_value`)."""
SKELETON_MAX = 1 << 20
"""A value whose pickle without its large buffers is larger than this is written as one plain
pickle stream (loaded by reading it)."""
MAPPED_MAGIC = b"corral-mapped-value-1\n"
PAGE = mmap.ALLOCATIONGRANULARITY
_HEAD = struct.Struct("<I")
_SPAN = struct.Struct("<QQ")
_PROTO5, _BINBYTES, _POP, _BYTEARRAY8, _NEXT_BUFFER = b"\x80\x05", b"B", b"0", b"\x96", b"\x97"


class _SpillWriter:
    """A file-like sink for a pickler: keeps the bytes in memory up to ``limit``, then goes on
    in ``path``; hashes them on the way."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.hasher = hashlib.blake2b(digest_size=16)  # corral.hashing.digest_bytes
        self.buffer: io.BytesIO | None = io.BytesIO()
        self.fh: Any = None
        self.size = 0

    def write(self, data: Any) -> int:
        n = memoryview(data).nbytes
        self.size += n
        if self.buffer is not None:
            if self.size <= self.limit:
                self.hasher.update(data)
                self.buffer.write(data)
                return n
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "wb")
            self.fh.write(self.buffer.getbuffer())  # hashed already
            self.buffer = None
        if n < HASH_ASIDE:
            self.hasher.update(data)
            self.fh.write(data)
            return n
        # hashlib lets go of the GIL on large buffers: hash in a thread while this one writes,
        # then syncs what it wrote (hashing is the slower: the last fsync has little left)
        aside = threading.Thread(target=self.hasher.update, args=(data,))
        aside.start()
        try:
            self.fh.write(data)
            self.fh.flush()
            os.fsync(self.fh.fileno())
        finally:
            aside.join()
        return n

    def finish(self) -> bytes | StoredResult:
        if self.buffer is not None:
            return self.buffer.getvalue()
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        return StoredResult(str(self.hasher.hexdigest()), self.size, str(self.path), [])

    def discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.path.unlink(missing_ok=True)


class _TooLarge(Exception):
    """The skeleton of a value passed :data:`SKELETON_MAX`."""


class _Skeleton(io.BytesIO):
    def write(self, data: Any) -> int:
        if self.tell() + memoryview(data).nbytes > SKELETON_MAX:
            raise _TooLarge
        return super().write(data)


def _skeleton(value: Any) -> tuple[bytes, list[memoryview]] | None:
    """The pickle of ``value`` with its large contiguous buffers out of band (protocol 5),
    and those buffers; None if that pickle would pass :data:`SKELETON_MAX`."""
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: in the stream
            return True
        if raw.nbytes < OOB_MIN:
            return True
        buffers.append(raw)
        return False  # (a false value: out of band)

    sink = _Skeleton()
    try:
        Pickler(sink, protocol=5, buffer_callback=out_of_band).dump(value)
    except _TooLarge:
        return None
    return sink.getvalue(), buffers


def _unframed(skeleton: bytes) -> list[bytes]:
    """The opcodes of ``skeleton`` without its FRAME opcodes (frames are optional, and
    bytes put inside a frame would break it), cut at each NEXT_BUFFER opcode."""
    pieces: list[bytes] = []
    current = bytearray()
    ops = list(pickletools.genops(skeleton))
    for i, (op, _arg, pos) in enumerate(ops):
        stop = ops[i + 1][2] if i + 1 < len(ops) else len(skeleton)
        if op.name == "FRAME":
            continue
        if op.name == "NEXT_BUFFER":
            pieces.append(bytes(current))
            current = bytearray()
            continue
        current += skeleton[pos:stop]
    pieces.append(bytes(current))
    return pieces


def _mapped_parts(pieces: list[bytes], buffers: list[memoryview]) -> list[Any]:
    """The parts of a mapped value file (see :func:`dump_value`), in order."""
    header_size = len(MAPPED_MAGIC) + _HEAD.size + _SPAN.size * len(buffers) \
        + sum(len(p) for p in pieces) + len(buffers)
    pos = len(_PROTO5) + 1 + _HEAD.size + header_size + 1
    body: list[Any] = []
    spans: list[bytes] = []
    for piece, buf in zip(pieces, buffers, strict=False):
        pos += len(piece)
        pad = -(pos + 1 + _HEAD.size + 1 + 1 + 8) % PAGE
        body += [piece, _BINBYTES + _HEAD.pack(pad) + bytes(pad) + _POP,
                 _BYTEARRAY8 + struct.pack("<Q", buf.nbytes), buf]
        pos += 1 + _HEAD.size + pad + 1 + 1 + 8
        spans.append(_SPAN.pack(pos, buf.nbytes))
        pos += buf.nbytes
    body.append(pieces[-1])
    header = b"".join([MAPPED_MAGIC, _HEAD.pack(len(buffers)), *spans,
                       _NEXT_BUFFER.join(pieces)])
    return [_PROTO5 + _BINBYTES + _HEAD.pack(len(header)) + header + _POP, *body]


def dump_value(value: Any, spill: Path | None) -> bytes:
    """The pickled ``value``; one larger than :data:`SPILL_MIN` is written to ``spill``
    instead (when given) and the pickle of a :class:`StoredResult` returned (see
    :func:`spill_value`)."""
    if spill is None:
        return dumps(value)
    out = spill_value(value, spill)
    return dumps(out) if isinstance(out, StoredResult) else out


def spill_value(value: Any, spill: Path | str) -> bytes | StoredResult:
    """The pickled ``value``, or, if it is larger than :data:`SPILL_MIN`, where it was written:
    the file ``spill``, complete and ``fsync``'ed.

    A value holding large contiguous buffers (numpy arrays, also inside lists, dicts,
    DataFrames...) is written so that :func:`load_file` memory-maps them instead of reading
    them: one pickle stream that any unpickler reads whole (``pickle.loads`` of its bytes gives
    the value), which begins with a header (in a bytes object the stream pops: its magic, where
    each buffer lies and the pickle with the buffers out of band, protocol 5), and in which each
    buffer starts on a page boundary. The file is hashed while it is written (the CAS digest,
    :func:`corral.hashing.digest_bytes` of its bytes)."""
    if type(value) in SCALARS and not (isinstance(value, str | bytes) and len(value) > 4096):
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)  # (most values: small)
    laid = _skeleton(value)
    if laid is not None and not laid[1] and len(laid[0]) <= SPILL_MIN:
        return laid[0]
    sink = _SpillWriter(Path(spill), -1 if laid is not None else SPILL_MIN)
    try:
        if laid is None:
            Pickler(sink, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        elif not laid[1]:
            sink.write(laid[0])
        else:
            for part in _mapped_parts(_unframed(laid[0]), laid[1]):
                sink.write(part)
        out = sink.finish()
    except OSError:  # a full disk: the engine gets the bytes, and stops on its own write
        sink.discard()
        return dumps(value)
    except BaseException:
        sink.discard()
        raise
    if isinstance(out, StoredResult):
        out.files.extend(returned_files(value, Path.cwd()))
    return out


def stored_result(path: Path, marker: Mapping[str, Any]) -> bytes | None:
    """What an executor hands the engine for the ``result.pkl`` at ``path`` of an attempt whose
    exit ``marker`` was read, where the engine can read that file (a shared file system, or a
    copy fetched back): for a large value the worker wrote there (its marker's ``value``), the
    pickle of a :class:`StoredResult` naming the file (the engine moves it into its store and
    never reads it), else the file's bytes (None if it is missing)."""
    stored = marker.get("value")
    if isinstance(stored, dict) and path.is_file():
        files = marker.get("files")
        return dumps(StoredResult(str(stored["digest"]), int(stored["size"]), str(path),
                                  [str(f) for f in files] if isinstance(files, list) else []))
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def load_file(path: str | os.PathLike[str]) -> Any:
    """Unpickle a value from a file without holding its bytes and the value at once; the large
    buffers of a mapped value file (see :func:`dump_value`) are memory-mapped copy-on-write:
    read from the file as they are used, and changing them changes only this process's copy."""
    with open(path, "rb") as fh:
        head = fh.read(len(_PROTO5) + 1 + _HEAD.size + len(MAPPED_MAGIC))
        if head[:3] != _PROTO5 + _BINBYTES or head[7:] != MAPPED_MAGIC:
            fh.seek(0)
            return pickle.load(fh)
        header = fh.read(_HEAD.unpack(head[3:7])[0] - len(MAPPED_MAGIC))
        (count,) = _HEAD.unpack_from(header)
        spans = [_SPAN.unpack_from(header, _HEAD.size + i * _SPAN.size) for i in range(count)]
        skeleton = header[_HEAD.size + count * _SPAN.size:]
        try:
            view = memoryview(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY))
        except OSError:  # a file system that cannot map files: read it as a plain pickle
            fh.seek(0)
            return pickle.load(fh)
    return pickle.loads(skeleton, buffers=[view[start:start + n] for start, n in spans])


def resolve_refs(value: Any) -> Any:
    """A copy of ``value`` with every :class:`ResultRef` (in lists, tuples, dicts) loaded."""
    if type(value) in SCALARS:  # (most arguments: nothing to look into)
        return value
    if isinstance(value, ResultRef):
        return load_file(value.path)
    if isinstance(value, list):
        return [resolve_refs(v) for v in value]
    if isinstance(value, tuple):
        return tuple(resolve_refs(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_refs(v) for k, v in value.items()}
    return value


@dataclass
class AttemptResult:
    """What running a payload produced."""

    outcome: str
    """An :class:`corral.executors.base.Outcome` value."""
    metrics: dict[str, Any]
    result: bytes | None = None
    error: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    files: list[str] | None = None
    """Files the task returned (see :func:`returned_files`); only when asked for."""
    spilled: StoredResult | None = None
    """Where the worker wrote a large value (``result`` is then the pickle of this)."""


_FUNC_CACHE: dict[str, Any] = {}
_MONITOR: TreeMonitor | None = None


def _monitor() -> TreeMonitor:
    global _MONITOR
    if _MONITOR is None:
        _MONITOR = TreeMonitor()
    return _MONITOR


_CONTROLLER: tuple[int, Any] | None = None
"""threadpoolctl's view of this process's loaded libraries, and len(sys.modules) when taken."""

_NUMERIC = ("numpy", "scipy", "torch", "numexpr", "sklearn", "cv2", "tensorflow", "jax")
"""Python packages that load thread pools (BLAS, OpenMP) that read their variables only once.
Without any of them loaded, the variables set for the attempt are enough and threadpoolctl
(0.05-0.1 s to import) is not imported."""


_NUMERIC_SEEN: tuple[int, bool] = (-1, False)
"""len(sys.modules) when last looked, and whether one of :data:`_NUMERIC` was loaded."""


def thread_limits(cores: str | None) -> contextlib.AbstractContextManager[Any]:
    """threadpoolctl limits of ``cores`` threads, or nothing if no numeric library is loaded."""
    global _CONTROLLER, _NUMERIC_SEEN
    if not cores or not cores.isdigit():
        return contextlib.nullcontext()
    if _NUMERIC_SEEN[0] != len(sys.modules):  # new imports: look again
        _NUMERIC_SEEN = (len(sys.modules), any(m in sys.modules for m in _NUMERIC))
    if not _NUMERIC_SEEN[1]:
        return contextlib.nullcontext()
    if _CONTROLLER is None or _CONTROLLER[0] != len(sys.modules):  # new imports: look again
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = (len(sys.modules), ThreadpoolController())
    controller = _CONTROLLER[1]
    if not controller.lib_controllers:
        return contextlib.nullcontext()
    return controller.limit(limits=int(cores))  # type: ignore[no-any-return]


def load_function(payload: PythonPayload) -> Any:
    func = _FUNC_CACHE.get(payload.func_digest)
    if func is None:
        func = cloudpickle.loads(payload.func)
        _FUNC_CACHE[payload.func_digest] = func
    return func


def returned_files(value: Any, cwd: Path) -> list[str]:
    """The existing files named by ``Path`` values in a task's return value (also inside lists,
    tuples and dicts, as the engine looks for them): relative to ``cwd`` when they are inside it
    (as POSIX paths), absolute otherwise."""
    found: list[str] = []
    for p in _paths(value):
        full = Path(cwd, p)
        if not full.is_file():
            continue
        name = str(p)
        for base, path in ((cwd, full), (cwd.resolve(), full.resolve())):
            with contextlib.suppress(ValueError):
                name = path.relative_to(base).as_posix()
                break
        found.append(name)
    return list(dict.fromkeys(found))


def _paths(value: Any) -> Iterator[PurePath]:
    if isinstance(value, PurePath):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _paths(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _paths(v)


def run_python(payload: PythonPayload, list_files: bool = False,
               spill: Path | str | None = None) -> AttemptResult:
    """Call the task function, measuring it; exceptions become a FAILED result with traceback.
    What it writes goes to this process's descriptors 1 and 2 (the caller points them at the
    attempt's logs); the processes it started are ended when it returns (see
    :mod:`corral.worker.children`), and counted in its peak memory while they live. With
    ``list_files``, the result's ``files`` are the files it returned. With ``spill``, a large
    value is written to that file (see :func:`dump_value`)."""
    monitor = _monitor()
    probe = Probe.begin(monitor)
    begin_attempt()
    outcome, result, error, files = "succeeded", None, None, None
    spilled: StoredResult | None = None
    try:
        func = load_function(payload)
        args, kwargs = cloudpickle.loads(payload.args)
        if b"ResultRef" in payload.args:  # (the class is named in the pickle of one)
            args, kwargs = resolve_refs((args, kwargs))
        value = func(*args, **kwargs)
        if list_files:
            files = returned_files(value, Path.cwd())
        try:
            out = spill_value(value, spill) if spill is not None else dumps(value)
            if isinstance(out, StoredResult):
                spilled, result = out, dumps(out)
            else:
                result = out
        except Exception as exc:
            outcome = "failed"
            error = (
                f"the task returned a {type(value).__name__} that cannot be pickled ({exc}); "
                "return plain data, numpy arrays or paths"
            )
    except MemoryError:
        outcome, error = "out_of_memory", traceback.format_exc()
    except BaseException:
        outcome, error = "failed", traceback.format_exc()
    end_children()
    metrics: dict[str, Any] = probe.end(monitor)
    if keep_requested():
        metrics["kept"] = kept_processes()  # spared when this worker is killed later
    return AttemptResult(outcome, metrics, result, error, None, None, files, spilled)


def shell_argv(command: str) -> list[str]:
    """The argv that runs a task's command line.

    A simple command (plain words: no quoting, expansion, redirection, pipes, globs or
    assignments, and not a shell builtin) is executed directly, exactly as bash would after
    word splitting, which saves starting a shell. Everything else runs under ``bash -c`` with
    ``-e`` and ``pipefail``.
    """
    direct = simple_command(command)
    return direct if direct is not None else ["bash", "-c", SHELL_PREAMBLE + command]


_SHELL_SYNTAX = frozenset("|&;<>()$`\\\"'*?[]{}~!=%^\n\r\t")
_BUILTINS = frozenset(
    "cd exit export source . set unset alias eval exec read wait trap ulimit umask shift "
    "return local declare typeset let type hash times builtin command jobs fg bg history "
    "readonly getopts caller enable help logout mapfile readarray popd pushd dirs disown "
    "suspend shopt complete compgen compopt".split()
)


def simple_command(command: str) -> list[str] | None:
    """The argv of ``command`` if it is a simple command bash would run unchanged, else None."""
    if any(c in _SHELL_SYNTAX for c in command):
        return None
    words: list[str] = []
    for word in command.split(" "):
        if not word:
            continue
        if word.startswith("#"):
            break  # a comment runs to the end of the line
        if "#" in word:
            return None
        words.append(word)
    if not words or words[0] in _BUILTINS or _which(words[0], os.environ.get("PATH", "")) is None:
        return None
    return words


@functools.lru_cache(maxsize=256)
def _which(name: str, path: str) -> str | None:
    import shutil

    return shutil.which(name, path=path)


def missing_outputs(outputs: list[str], cwd: Path) -> list[str]:
    return [o for o in outputs if not (cwd / o).exists()]


def shell_outcome(returncode: int, outputs: list[str], cwd: Path) -> tuple[str, str | None]:
    """Classify a finished shell command."""
    if returncode == 0:
        missing = missing_outputs(outputs, cwd)
        if missing:
            return "failed", (
                f"the command exited 0 but did not create declared output(s) {missing}; "
                "check the command writes to {output}"
            )
        return "succeeded", None
    if returncode < 0:
        return "failed", f"the command was killed by signal {-returncode}"
    return "failed", f"the command exited with status {returncode}"


def make_output_dirs(outputs: list[str], cwd: Path | str) -> str | None:
    """Create the folders of a shell task's declared outputs (``csv/a.csv`` needs ``csv/``),
    as a command expects them to exist; run where the command runs, before it starts.
    Returns the attempt's error if one cannot be created."""
    for out in outputs:
        parent = Path(cwd, out).parent
        if parent.is_dir():
            continue
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create the folder of the declared output {out}: {exc}"
    return None


def run_shell(payload: ShellPayload, cwd: Path, stdout: Path, stderr: Path) -> AttemptResult:
    """Run a shell payload to completion (used on cluster nodes and SSH hosts)."""
    monitor = _monitor()
    probe = Probe.begin(monitor)
    problem = make_output_dirs(payload.outputs, cwd)
    if problem:
        return AttemptResult("failed", probe.end(monitor), None, problem)
    import subprocess  # only shell tasks need it: not imported by every array element

    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.run(  # noqa: S603 - argv list, command is the task's own
            shell_argv(payload.command), cwd=cwd, stdout=out, stderr=err, check=False
        )
    end_children()  # what the command left running in the background
    metrics = probe.end(monitor)
    metrics["exit_code"] = proc.returncode
    outcome, error = shell_outcome(proc.returncode, payload.outputs, cwd)
    return AttemptResult(outcome, metrics, None, error)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_attempt_dir(attempt_dir: Path, cwd: Path | None = None) -> int:
    """Run the payload of an attempt directory; write result and exit marker. Returns exit code."""
    attempt_dir = attempt_dir.resolve()
    cwd = cwd or Path.cwd()
    atomic_write(
        attempt_dir / STARTED_FILE,
        json.dumps({"started": time.time(), "host": hostname(), "pid": os.getpid()}).encode(),
    )
    payload = pickle.loads((attempt_dir / PAYLOAD_FILE).read_bytes())
    # orphans of the task stay our descendants; a SIGTERM (cancel, walltime) ends them too
    become_subreaper()
    previous = signal.signal(signal.SIGTERM, _end_on_sigterm)
    try:
        if isinstance(payload, ShellPayload):
            res = run_shell(payload, cwd, attempt_dir / STDOUT_FILE, attempt_dir / STDERR_FILE)
        else:
            # descriptors 1 and 2 are the attempt's logs already (opened by the job script or
            # the SSH launcher): prints keep their place among the lines of child processes
            line_buffered()
            res = run_python(payload, list_files=True, spill=attempt_dir / VALUE_FILE)
            if res.error:
                sys.stderr.write(res.error)
            sys.stdout.flush()
    finally:
        signal.signal(signal.SIGTERM, previous)
    marker: dict[str, Any] = {"outcome": res.outcome, "metrics": res.metrics, "error": res.error}
    if res.spilled is not None:  # written, hashed and synced already: the value's own pickle
        os.replace(res.spilled.path, attempt_dir / RESULT_FILE)
        marker["value"] = {"digest": res.spilled.digest, "size": res.spilled.size}
    elif res.result is not None:
        atomic_write(attempt_dir / RESULT_FILE, res.result)
    if res.files:
        marker["files"] = res.files
    atomic_write(attempt_dir / MARKER_FILE, json.dumps(marker).encode())
    return 0 if res.outcome == "succeeded" else 1


def _end_on_sigterm(signum: int, _frame: Any) -> None:
    """End the task's processes (those that left the process group too), then die of the
    signal, as the executor that sent it expects."""
    stop_processes(descendants(os.getpid()) or [], grace=1.0)
    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def read_marker(attempt_dir: Path) -> dict[str, Any] | None:
    """The exit marker of an attempt directory, or ``None`` if not (yet) written."""
    try:
        data: dict[str, Any] = json.loads((attempt_dir / MARKER_FILE).read_bytes())
        return data
    except (OSError, ValueError):
        return None
