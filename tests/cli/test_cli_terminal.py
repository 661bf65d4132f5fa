"""Issue 21: the real ``corral`` at 80 and 120 columns in a terminal (a pseudo-terminal) and
piped. Task names, run ids and states appear whole on one line, copyable; piped output is plain
text (no box drawing, no colour, one row a line); help texts read as written. Also the
``--json`` of ``logs``, ``report`` and ``export``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .clihelp import CORRAL, Project, corral

LONG = "convert_" + "ostrich_lolium_measurements_" * 3 + "of_the_day"
"""A task name longer than 80 columns: still whole, on one line."""
PIPELINE = "a_pipeline_with_a_rather_long_descriptive_name"

WIDE = textwrap.dedent(f'''
    from corral import pipeline, task

    @task
    def convert_ostrich_lolium(x: int) -> int:
        return x

    @task
    def measure(x: int) -> int:
        print("\\n".join(f"line {{i}} of measure" for i in range(500)))
        if x == 7:
            raise ValueError("seven is not measured")
        return x

    @pipeline
    def {PIPELINE}(n: int = 60, label: str = "a-somewhat-long-parameter-value-for-the-list"):
        convert_ostrich_lolium(1)
        convert_ostrich_lolium.options(name="{LONG}")(2)
        measure.map(x=range(n))
    ''')
BOX = re.compile("[─━│┃┏┓┗┛┡┩╇╭╮╰╯]")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@pytest.fixture
def ran(project: Project) -> str:
    """The run of WIDE: 62 tasks, one failed (measure[7])."""
    (project.root / "wide.py").write_text(WIDE)
    result = corral("run", project.file("wide.py"), "-q", cwd=project.wd)
    assert result.returncode == 1, result.stderr
    return str(json.loads(corral("runs", "--json", cwd=project.wd).stdout)[0]["id"])


def in_terminal(*args: Any, cwd: Path, columns: int, **env: str) -> str:
    """``corral ARGS`` in a pseudo-terminal ``columns`` wide; its output without escapes."""
    environ = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    environ.update({"COLUMNS": str(columns), "LINES": "60", "TERM": "xterm-256color", **env})
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    proc = subprocess.Popen([CORRAL, *map(str, args)], cwd=cwd, stdin=slave, stdout=slave,  # noqa: S603
                            stderr=slave, env=environ, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    proc.wait(60)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def plain(text: str) -> str:
    return ANSI.sub("", text)


def row_of(text: str, name: str) -> str:
    """The one line on which ``name`` stands whole (as a word of its own)."""
    lines = [line for line in text.splitlines() if re.search(rf"(^|\s){re.escape(name)}(\s|$)", line)]
    assert lines, f"{name!r} is not whole on any line of:\n{text}"
    return lines[0]


def assert_rows(text: str, rows: dict[str, str]) -> None:
    """Each name stands whole on a line, its state whole on the same line."""
    for name, state in rows.items():
        line = row_of(text, name)
        assert re.search(rf"(^|\s){re.escape(state)}(\s|,|$)", line), (name, state, line)


GROUPED = {"convert_ostrich_lolium": "succeeded", LONG: "succeeded",
           "measure[0..59]": "1 failed", "measure[7]": "failed"}
"""The map as one row (a line per state in a terminal, the failures first), its failure named."""


@pytest.mark.parametrize("columns", [80, 120])
def test_status_in_a_terminal_keeps_names_and_states_whole(project: Project, ran: str,
                                                           columns: int) -> None:
    text = plain(in_terminal("status", ran, cwd=project.wd, columns=columns, NO_COLOR="1"))
    assert_rows(text, GROUPED)  # 62 tasks > --limit 50: the map is one row, its failure named
    lines = text.splitlines()
    assert re.search(r"\s59 succeeded(\s|$)", lines[lines.index(row_of(text, "measure[0..59]")) + 1])
    # only a name longer than the terminal makes lines longer: then its row has nothing else
    widest = max(columns, len(LONG) + len("   59 succeeded"))
    assert all(len(line) <= widest for line in text.splitlines()), text
    assert BOX.search(text)  # a terminal gets the table's rule
    assert "hidden at this width; --wide shows all" in text
    wide = plain(in_terminal("status", ran, "--wide", cwd=project.wd, columns=columns))
    assert "host" in wide and "job" in wide and "hidden" not in wide
    every = plain(in_terminal("status", ran, "--limit", "0", cwd=project.wd, columns=columns))
    assert_rows(every, {f"measure[{i}]": "failed" if i == 7 else "succeeded" for i in range(60)})


@pytest.mark.parametrize("columns", [80, 120])
def test_metrics_and_runs_in_a_terminal(project: Project, ran: str, columns: int) -> None:
    metrics = plain(in_terminal("status", ran, "--metrics", cwd=project.wd, columns=columns))
    for name in ("convert_ostrich_lolium", LONG, "measure"):
        row_of(metrics, name)
    assert ran in metrics and PIPELINE in metrics
    runs = plain(in_terminal("runs", cwd=project.wd, columns=columns))
    header = row_of(runs, "run")
    assert re.search(r"\bstate\b", header) and "…" not in runs
    assert re.search(rf"(^|\s){ran}\s+failed\s+{PIPELINE}(\s|$)", runs), runs


def test_piped_output_is_plain_text(project: Project, ran: str) -> None:
    status = corral("status", ran, cwd=project.wd)  # COLUMNS=80, stdout a pipe
    text = status.stdout
    assert not BOX.search(text) and "\x1b[" not in text
    assert all(line.strip() for line in text.splitlines()), "no padding lines"
    assert_rows(text, GROUPED)
    assert "1 failed, 59 succeeded" in row_of(text, "measure[0..59]")  # one row a line
    assert "host" in row_of(text, "task")  # every column: nothing has to fit
    runs = corral("runs", cwd=project.wd).stdout.splitlines()
    assert runs[0].split() == ["run", "state", "pipeline", "tasks", "created", "duration", "params"]
    assert runs[1].split()[:3] == [ran, "failed", PIPELINE]
    assert runs[1].endswith("label=a-somewhat-long-parameter-value-for-the-list")
    metrics = corral("status", ran, "--metrics", cwd=project.wd).stdout
    assert not BOX.search(metrics)
    assert re.search(rf"^{LONG}\s+1\s", metrics, re.MULTILINE), metrics


def test_tsv(project: Project, ran: str) -> None:
    lines = corral("status", ran, "--tsv", cwd=project.wd).stdout.splitlines()
    rows = [line.split("\t") for line in lines]
    assert rows[0] == ["task", "state", "tries", "wall", "cpu", "peak mem", "host", "job"]
    assert len(rows) == 63 and all(len(r) == 8 for r in rows)  # every task, not grouped
    assert {r[0]: r[1] for r in rows[1:]}["measure[7]"] == "failed"
    runs = [line.split("\t") for line in corral("runs", "--tsv", cwd=project.wd).stdout.splitlines()]
    assert runs[1][:3] == [ran, "failed", PIPELINE] and all(len(r) == 7 for r in runs)


def test_no_color_and_dumb_terminal(project: Project, ran: str) -> None:
    coloured = in_terminal("status", ran, cwd=project.wd, columns=80)
    assert "\x1b[32m" in coloured or "\x1b[0;32m" in coloured  # green "succeeded"
    no_color = in_terminal("status", ran, cwd=project.wd, columns=80, NO_COLOR="1")
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m", no_color)
    dumb = in_terminal("status", ran, cwd=project.wd, columns=80, TERM="dumb")
    assert not BOX.search(dumb) and "\x1b[" not in dumb
    assert_rows(dumb, GROUPED)


@pytest.mark.parametrize("columns", [80, 120])
def test_logs_title_whole(project: Project, ran: str, columns: int) -> None:
    text = plain(in_terminal("logs", ran, "measure[7]", cwd=project.wd, columns=columns))
    assert "measure[7] attempt 1: failed" in text and "seven is not measured" in text
    piped = corral("logs", ran, "measure[7]", cwd=project.wd).stdout
    assert not BOX.search(piped)
    assert piped.splitlines()[0].startswith("== measure[7] attempt 1: failed on ")
    assert "line 499 of measure" in piped


def test_run_progress(project: Project) -> None:
    (project.root / "wide.py").write_text(WIDE)
    piped = corral("run", project.file("wide.py"), "--n", "3", cwd=project.wd)
    lines = piped.stdout.splitlines()
    assert not BOX.search(piped.stdout) and "\x1b[" not in piped.stdout
    progress = [line for line in lines if f" {PIPELINE}: " in line]
    assert progress and re.search(r"5/5 finished \(5 done, 0 cached, 0 failed\), 0 running$",
                                  progress[-1]), lines
    assert lines[-1].endswith("succeeded")  # then the outcome
    shown = plain(in_terminal("run", project.file("wide.py"), "--n", "4", cwd=project.wd,
                              columns=80))
    assert PIPELINE in shown and "6/6" in shown and "succeeded" in shown
    assert "measure" in shown and LONG[:40] in shown  # the bars per task name (below)


def test_progress_has_a_bar_per_task_name() -> None:
    """Counts by state per task name (a map's elements share theirs), the name last and whole."""
    from rich.console import Console

    from corral.cli.progress import LiveProgress
    from corral.engine.progress import Progress
    from corral.states import TaskState

    console = Console(width=80, force_terminal=True, color_system=None, record=True)
    p = Progress(total=6)
    for group, n in (("convert", 1), ("measure", 4), ("never_started", 1)):
        for _ in range(n):
            p.count(group, None, TaskState.PENDING)
    with LiveProgress(console, "pipe") as live:
        for _ in range(3):
            p.count("measure", TaskState.PENDING, TaskState.CACHED)
        p.count("measure", TaskState.PENDING, TaskState.RUNNING)
        p.count("convert", TaskState.PENDING, TaskState.FAILED)
        live.update(p, force=True)
    lines = [re.sub(r"\s+", " ", line.strip()) for line in console.export_text().splitlines()]
    # 3 of 4 ended, its ETA (none known yet), the name; an ended name shows its time taken
    assert any(re.fullmatch(r"3/4 3 cached 1 running (-+:--|\d+:\d\d) measure", line) for line in lines), lines
    assert any(re.fullmatch(r"1/1 1 failed \d+:\d\d convert", line) for line in lines), lines
    assert not any("never_started" in line for line in lines)  # nothing to show yet


def test_progress_per_task_name_has_its_eta() -> None:
    """A name half done after 10 s of steady progress has 10 s left."""
    from rich.console import Console

    from corral.cli.progress import LiveProgress
    from corral.engine.progress import Progress
    from corral.states import TaskState

    now = [100.0]
    console = Console(width=80, force_terminal=True, color_system=None, record=True)
    p = Progress(total=10)
    for _ in range(10):
        p.count("measure", None, TaskState.PENDING)
    with LiveProgress(console, "pipe", clock=lambda: now[0]) as live:
        for second in range(11):
            now[0] = 100.0 + second
            if second % 2 == 0 and second:
                p.count("measure", TaskState.PENDING, TaskState.SUCCEEDED)
            p.count("measure", TaskState.PENDING, TaskState.RUNNING)
            p.count("measure", TaskState.RUNNING, TaskState.PENDING)
            live.update(p, force=True)
    lines = [re.sub(r"\s+", " ", line.strip()) for line in console.export_text().splitlines()]
    assert any(re.fullmatch(r"5/10 5 succeeded 00:1[01] measure", line) for line in lines), lines


def test_help_reads_as_written() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    listing = subprocess.run([CORRAL, "--help"], capture_output=True, text=True, env=env,  # noqa: S603
                             check=True).stdout
    assert "With FILE, --help also lists the pipeline's parameters." in listing
    commands = listing.split("Commands:")[1]
    assert not set(listing) & set("╭│╰─")  # piped: plain
    assert not any(line.endswith("...") for line in commands.splitlines())  # nothing cut
    assert "A run without a live engine has its recorded cluster jobs" in " ".join(listing.split())
    for command in ("run", "resume", "runs", "status", "logs", "pause", "cancel", "clean",
                    "report", "lineage", "why", "export"):
        text = subprocess.run([CORRAL, command, "--help"], capture_output=True, text=True,  # noqa: S603
                              env=env, check=True).stdout
        assert f"Example: corral {command}" in text, command


def test_help_piped_at_80_columns_is_plain_and_whole() -> None:
    env = {**os.environ, "COLUMNS": "80"}
    listing = subprocess.run([CORRAL, "--help"], capture_output=True, text=True, env=env,  # noqa: S603
                             check=True).stdout
    assert not set(listing) & set("╭│╰─"), listing
    assert not any(line.endswith("...") for line in listing.split("Commands:")[1].splitlines())
    assert "[bold]" not in listing, listing
    assert max(len(line) for line in listing.splitlines()) <= 80
    words = " ".join(listing.split())
    assert "Cancel a run: its engine cancels running tasks (on clusters too). A run without a live " \
           "engine has its recorded cluster jobs cancelled directly." in words


def test_logs_report_export_json(project: Project, ran: str) -> None:
    data = json.loads(corral("logs", ran, "measure[7]", "--json", "--full", cwd=project.wd).stdout)
    assert data["run"] == ran and data["task"] == "measure[7]" and data["state"] == "failed"
    (a,) = data["attempts"]
    assert a["state"] == "failed" and a["host"] and "seven is not measured" in a["error"]
    assert a["stdout"].startswith("[… ") and a["stdout"].rstrip().endswith("line 499 of measure")
    assert len(a["stdout"].splitlines()) <= 201  # the end only, even with --full
    assert Path(a["stdout_path"]).read_text().count("of measure") == 500
    report = json.loads(corral("report", ran, "-o", "r.html", "--json", cwd=project.wd).stdout)
    assert report == {"run": ran, "report": str(project.wd / "r.html")}
    assert Path(report["report"]).is_file()
    exported = json.loads(corral("export", ran, "--prov", "p.json", "--ro-crate", "crate",
                                 "--json", cwd=project.wd).stdout)
    assert exported == {"run": ran, "prov": str(project.wd / "p.json"),
                        "ro_crate": str(project.wd / "crate")}
    assert (project.wd / "p.json").is_file() and (project.wd / "crate").is_dir()
    resumed = corral("resume", ran, "--json", cwd=project.wd)  # measure[7] fails again
    assert resumed.returncode == 1
    assert json.loads(resumed.stdout)["state"] == "failed"
