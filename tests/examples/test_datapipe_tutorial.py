"""docs/tutorial.md as written: its commands run through the ``corral`` CLI, outputs checked.

The commands are read from the tutorial itself, so the page and the test cannot drift: every
``$ `` line of a ``console`` block (``export NAME=VALUE`` sets a variable for the commands after
it, a trailing ``&`` runs it in the background until the end of the module), the runnable Python
block of "From Python", and the output lines shown under a command (``...`` stands for
anything; the shown lines must appear in that order). Each command runs from the repository
root with ``.venv/bin`` first on PATH, as the tutorial says; the only change to an argv (and to
the outputs shown) is that ``/tmp/`` and ``/shared/`` are moved under a temporary directory. The server listens on the
tutorial's port 8765.

The ``-e slurm`` and ``-e sge`` blocks are separate tests (``-m slurm``, ``-m sge``), the rclone
section too (skipped when rclone is not on PATH).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import corral

REPO = Path(__file__).resolve().parents[2]
TUTORIAL = REPO / "docs" / "tutorial.md"
PIPELINE = REPO / "examples" / "datapipe" / "pipeline.py"
CLUSTERS = {"slurm": ("sbatch", ["sinfo", "-h"]), "sge": ("qsub", ["qstat", "-f"])}
_MOVED = re.compile(r"(?<![\w.])/(tmp|shared)/")


@dataclass
class Command:
    section: str  # the "## " heading it is under
    text: str  # the command after "$ ", or a Python script
    expected: list[str] = field(default_factory=list)  # output lines shown under it
    group: str = "local"  # setup | local | rclone | slurm | sge
    python: bool = False


def _blocks(markdown: str) -> Iterator[tuple[str, str, list[str]]]:
    """``(section, language, lines)`` of each fenced block."""
    section, lang = "", None
    lines: list[str] = []
    for line in markdown.splitlines():
        if lang is None and line.startswith("## "):
            section = line[3:].strip()
        elif lang is None and line.startswith("```"):
            lang, lines = line[3:].strip(), []
        elif lang is not None and line.startswith("```"):
            yield section, lang, lines
            lang = None
        elif lang is not None:
            lines.append(line)


def _console(section: str, lines: list[str]) -> list[Command]:
    """The commands of one console block; after an ``-e slurm``/``-e sge`` run, the block's
    remaining commands belong to that cluster too."""
    cmds: list[Command] = []
    group = "setup" if section.startswith("0.") else "rclone" if "rclone" in section else "local"
    for line in lines:
        if line.startswith("$ "):
            argv = shlex.split(line[2:], comments=True)
            for i, arg in enumerate(argv[:-1]):
                if arg in ("-e", "--executor") and argv[i + 1] in CLUSTERS:
                    group = argv[i + 1]
            cmds.append(Command(section, line[2:], group=group))
        elif line.strip() and cmds:
            cmds[-1].expected.append(line)
    return cmds


def tutorial_commands() -> list[Command]:
    """Every command of the tutorial, in order."""
    cmds: list[Command] = []
    last_python: Command | None = None
    for section, lang, lines in _blocks(TUTORIAL.read_text()):
        if lang == "console":
            cmds.extend(_console(section, lines))
        elif lang == "python" and "From Python" in section:
            last_python = Command(section, "\n".join(lines), python=True)
            cmds.append(last_python)
            continue
        elif lang == "text" and last_python is not None:
            last_python.expected = [ln for ln in lines if ln.strip()]  # what it prints
        last_python = None
    return cmds


def _matches(expected: list[str], output: str) -> bool:
    """Do the ``expected`` lines (``...``: anything) match lines of ``output``, in order?"""
    lines = iter(ln.rstrip() for ln in output.splitlines())
    for want in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in want.rstrip().split("...")))
        if not any(pattern.fullmatch(line) for line in lines):
            return False
    return True


class Shell:
    """Runs the tutorial's commands under ``root``, keeping ``export``ed variables and the
    background processes (stopped by ``close``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        self.env = {**os.environ, "PATH": path, "COLUMNS": "500",  # no wrapping by rich
                    "RCLONE_CONFIG": str(root / "rclone.conf")}  # not the user's rclone.conf
        self.background: list[subprocess.Popen[bytes]] = []

    def moved(self, text: str) -> str:
        return _MOVED.sub(lambda m: f"{self.root}/{m.group(1)}/", text)

    def run(self, cmd: Command) -> str:
        if cmd.python:
            argv = [sys.executable, "-c", self.moved(cmd.text)]
        else:
            argv = [self.moved(a) for a in shlex.split(cmd.text, comments=True)]
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                self.env[name] = value
            return ""
        if argv[-1] == "&":
            self.start(argv[:-1])
            return ""
        proc = subprocess.run(argv, cwd=REPO, env=self.env, capture_output=True, text=True,  # noqa: S603
                              timeout=280)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"$ {cmd.text}\nexit {proc.returncode}\n{out}"
        expected = [self.moved(line) for line in cmd.expected]  # paths in outputs too
        assert _matches(expected, proc.stdout), \
            f"$ {cmd.text}\nthe tutorial shows\n" + "\n".join(expected) + f"\ngot\n{out}"
        return out

    def start(self, argv: list[str]) -> None:
        """Start a background command; with ``--port N``, wait until N accepts connections."""
        port = int(argv[argv.index("--port") + 1]) if "--port" in argv else None
        if port is not None and _listening(port):
            pytest.fail(f"port {port}, which the tutorial uses, is already in use: stop the process "
                        f"listening on 127.0.0.1:{port} (a serve.py left from the tutorial?)")
        log = self.root / f"background-{len(self.background)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=out,  # noqa: S603
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append(proc)
        deadline = time.monotonic() + 30
        while port is not None and not _listening(port):
            if proc.poll() is not None:
                pytest.fail(f"{shlex.join(argv)} exited {proc.returncode}: {log.read_text()}")
            assert time.monotonic() < deadline, f"{shlex.join(argv)}: port {port} not open in 30 s"
            time.sleep(0.1)

    def close(self) -> None:
        for proc in self.background:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


COMMANDS = tutorial_commands()


def _group(name: str) -> list[Command]:
    return [c for c in COMMANDS if c.group == name]


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    """The tutorial's section 0 done: the dataset made, the server running on port 8765."""
    sh = Shell(tmp_path_factory.mktemp("tutorial"))
    try:
        for cmd in _group("setup"):
            sh.run(cmd)
        yield sh
    finally:
        sh.close()


def test_tutorial_is_parsed() -> None:
    """The parser finds what the page has (guards against a change of format)."""
    groups = {c.group for c in COMMANDS}
    assert groups == {"setup", "local", "rclone", "slurm", "sge"}, groups
    assert any(c.text.endswith("&") for c in _group("setup"))
    assert sum(c.python for c in COMMANDS) == 1
    for kind in CLUSTERS:
        assert any(f"-e {kind}" in c.text for c in _group(kind))


def test_tutorial_pipeline_excerpt_matches_source() -> None:
    """The pipeline shown in section 1 is pipeline.py's, line for line (comments aside)."""
    (excerpt,) = [lines for section, lang, lines in _blocks(TUTORIAL.read_text())
                  if lang == "python" and section.startswith("1.")]

    def code(lines: list[str]) -> list[str]:
        stripped = (re.sub(r"\s+#.*$", "", ln).strip() for ln in lines)
        return [ln for ln in stripped if ln and not ln.startswith("#")]

    source = iter(code(PIPELINE.read_text().splitlines()))
    for line in code(excerpt):
        assert any(line == s for s in source), f"not in {PIPELINE.name} (in this order): {line}"


def test_tutorial_local(shell: Shell) -> None:
    for cmd in _group("local"):
        shell.run(cmd)


def test_tutorial_rclone(shell: Shell) -> None:
    if shutil.which("rclone") is None:
        pytest.skip("rclone is not on PATH (apt-get install rclone; scripts/rig/install-system-deps.sh)")
    for cmd in _group("rclone"):
        shell.run(cmd)
    site = shell.root / "tmp" / "www" / "datapipe"
    assert "<h1>Corral datapipe: subj01, subj02</h1>" in (site / "index.html").read_text()


def _cluster_available(kind: str) -> None:
    tool, probe = CLUSTERS[kind]
    reason = None
    if shutil.which(tool) is None:
        reason = f"{tool} is not on PATH"
    elif subprocess.run(probe, capture_output=True, timeout=15).returncode != 0:  # noqa: S603
        reason = f"{' '.join(probe)} failed"
    if reason is not None:
        if os.environ.get("CORRAL_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"{kind} cluster required (CORRAL_REQUIRE_CLUSTERS=1) but {reason}")
        pytest.skip(f"{kind} cluster not available: {reason}")


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm),
                                  pytest.param("sge", marks=pytest.mark.sge)])
def test_tutorial_cluster(request: pytest.FixtureRequest, kind: str) -> None:
    _cluster_available(kind)
    shell: Shell = request.getfixturevalue("shell")  # only once the cluster answers
    workdirs = set()
    for cmd in _group(kind):
        shell.run(cmd)
        argv = shlex.split(cmd.text, comments=True)
        if "--workdir" in argv:
            workdirs.add(Path(shell.moved(argv[argv.index("--workdir") + 1])))
    (workdir,) = workdirs
    attempts = corral.Client(workdir).run("latest").attempts()
    assert attempts and {a["executor"] for a in attempts} == {kind}  # really on the cluster
    assert all(a["native_id"] for a in attempts)
