"""Job scripts: the request a scheduler module turns into directives, quoting, and rendering.

Nothing user-controlled reaches a script unquoted: job names are reduced to ``[A-Za-z0-9_.-]``,
directive values are checked against a strict character set (no blanks, quotes, ``#``, ``;``,
``$`` or newlines), and everything in the shell body goes through :func:`shlex.quote`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from corral.errors import ResourceError
from corral.resources import Resources
from corral.worker.execute import MARKER_FILE

TEMPLATE_DIR = Path(__file__).with_name("templates")

_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
# characters allowed in a directive value (partition, account, constraint expression, paths)
_DIRECTIVE_SAFE = re.compile(r"^[A-Za-z0-9_.,:@%+=/&|!()\[\]*^<>~-]+$")
# a native/extra argument is one directive: blanks allowed, line breaks and comment starts not
_ARG_BAD = re.compile(r"[\n\r\0#;`$\\'\"]")
SUCCESS_PREFIX = json.dumps({"outcome": "succeeded"})[:-1]
"""How the worker's ``exit.json`` of a successful attempt starts (``json.dumps`` of a dict whose
first key is ``outcome``); the dependency guard of a job script greps for it."""


@dataclass
class JobRequest:
    """Everything a scheduler module needs to write the directives of one job."""

    name: str
    """Sanitised, run-tagged job name."""
    resources: Resources
    stdout: str
    """Scheduler-level standard output path (may hold the scheduler's array pattern)."""
    stderr: str
    array_size: int = 0
    """Number of array elements (0: a single job)."""
    throttle: int = 0
    """Most array elements running at once."""
    extra_args: Sequence[str] = ()


@dataclass
class ScriptBody:
    """The shell part of a job script, common to every scheduler."""

    cwd: str
    python: str
    attempt_dir: str | None = None
    list_file: str | None = None
    modules: Sequence[str] = ()
    setup: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    container: str | None = None
    container_runtime: str = "apptainer"
    binds: Sequence[str] = ()
    require_succeeded: Sequence[str] = ()
    """Attempt directories whose exit markers must say ``succeeded`` before the worker starts
    (detached mode on schedulers whose dependencies wait for the end, not the success)."""


def sanitize_name(text: str) -> str:
    """Reduce ``text`` to ``[A-Za-z0-9_.-]`` (runs of other characters become ``_``)."""
    return _NAME_BAD.sub("_", text).strip("_.-") or "task"


def run_tag(run_id: str) -> str:
    """The prefix of every job name of a run: ``corral-<run id>``."""
    return f"corral-{sanitize_name(run_id)}"


def job_name(run_id: str, name: str, limit: int = 128) -> str:
    """``corral-<run>-<name>`` sanitised and cut to ``limit`` characters (the run tag is kept)."""
    tag = run_tag(run_id)
    full = f"{tag}-{sanitize_name(name)}"
    return full[: max(limit, len(tag) + 2)]


def directive_value(what: str, value: object) -> str:
    """``value`` as it may appear in a directive line, or ResourceError naming ``what``."""
    text = str(value)
    if not _DIRECTIVE_SAFE.match(text):
        raise ResourceError(
            f"{what}={text!r} contains characters not allowed in a job directive "
            "(blanks, quotes, '#', ';', '$', backquotes or line breaks)"
        )
    return text


def directive_arg(what: str, value: str) -> str:
    """A free-form scheduler argument (native or extra_args) checked to stay one directive."""
    if not value.strip() or _ARG_BAD.search(value):
        raise ResourceError(
            f"{what} argument {value!r} is empty or contains a line break, quote, '#', ';', "
            "'$', backslash or backquote; pass plain scheduler options only"
        )
    return value


def tail(text: str | None, lines: int = 20) -> str:
    """The last ``lines`` lines of ``text`` (empty if none)."""
    if not text:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def worker_command(body: ScriptBody) -> str:
    """The quoted command line that starts the worker, wrapped in a container if configured."""
    if body.list_file is not None:
        args = ["-m", "corral.worker", "--array", body.list_file, "--cwd", body.cwd]
    else:
        args = ["-m", "corral.worker", str(body.attempt_dir), "--cwd", body.cwd]
    argv = [body.python, *args]
    if body.container:
        argv = _container_prefix(body) + argv
    return shlex.join(argv)


def _container_prefix(body: ScriptBody) -> list[str]:
    assert body.container is not None
    binds = sorted(set(body.binds) | {body.cwd})
    if body.container_runtime == "docker":
        prefix = ["docker", "run", "--rm", "--network=host", "-w", body.cwd]
        for b in binds:
            prefix += ["-v", f"{b}:{b}"]
        env_args = [a for k in sorted(body.env) for a in ("-e", k)]
        return [*prefix, *env_args, body.container]
    prefix = [body.container_runtime, "exec"]
    for b in binds:
        prefix += ["--bind", b]
    return [*prefix, body.container]


def body_context(body: ScriptBody) -> dict[str, object]:
    """Template variables of the shell body, every one already quoted."""
    for line in body.setup:
        if "\n" in line or "\0" in line:
            raise ResourceError(f"setup line {line!r} must be a single line")
    return {
        "cwd": shlex.quote(body.cwd),
        "modules": [shlex.quote(m) for m in body.modules],
        "setup": list(body.setup),
        "env": [(k, shlex.quote(v)) for k, v in sorted(body.env.items())],
        "is_array": body.list_file is not None,
        "list_file": shlex.quote(body.list_file or ""),
        "attempt_dir": shlex.quote(body.attempt_dir or ""),
        "require": [shlex.quote(f"{d}/{MARKER_FILE}") for d in body.require_succeeded],
        "success_pattern": shlex.quote("^" + SUCCESS_PREFIX),
        "command": worker_command(body),
    }


_ENV: jinja2.Environment | None = None


def render(kind: str, directives: Sequence[str], body: ScriptBody, comment: str = "") -> str:
    """Render ``templates/<kind>.sh.j2`` with directive lines and the common body."""
    global _ENV
    if _ENV is None:
        _ENV = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
    for line in directives:
        if "\n" in line or "\r" in line or "\0" in line:
            raise ResourceError(f"directive {line!r} must be a single line")
    safe_comment = sanitize_name(comment) if comment else ""
    template = _ENV.get_template(f"{kind}.sh.j2")
    return template.render(directives=list(directives), comment=safe_comment, **body_context(body))
