"""What a Python task's child processes write goes to its logs (``corral logs``, the report's
log tails), not to the output of ``corral run``; what they leave running ends with the task,
so ``corral run p.py | cat`` returns when the run ends; large outputs never go through the
engine's memory; ``corral logs`` shows the end of a log, ``--full`` all of it; a task keeps a
process running only when it says so (local executor; the other executors are checked in
tests/remote and tests/batch)."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time

import psutil

from .clihelp import CORRAL, Project, _env, corral, invoke

CHILDREN = textwrap.dedent('''
    import os, subprocess, sys
    from pathlib import Path
    from corral import pipeline, task

    @task
    def calls_tool() -> int:
        print("from python print")
        subprocess.run(["echo", "from child process stdout"])
        subprocess.run(["sh", "-c", "echo from child stderr >&2"])
        os.system("echo from os.system")
        print("python again")
        return 1

    @task
    def leaves(x: int) -> int:
        child = subprocess.Popen(["sleep", "60"])
        daemon = subprocess.Popen(["sh", "-c", "sleep 61 >/dev/null & echo $!"],
                                  stdout=subprocess.PIPE, start_new_session=True)
        orphan = daemon.communicate()[0].decode().strip()
        Path("pids").write_text(f"{child.pid} {orphan}")
        return x

    @task
    def tool_fails(x: int) -> int:
        subprocess.run(["sh", "-c", "echo tool says: disk quota exceeded >&2"])
        raise RuntimeError("the tool failed")

    @pipeline
    def children(fail: bool = False):
        n = leaves(calls_tool())
        return tool_fails(n) if fail else n
    ''')

CHILD_LINES = ["from python print", "from child process stdout", "from os.system",
               "python again"]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_child_output_goes_to_the_logs_and_leftovers_end(project: Project) -> None:
    (project.root / "children.py").write_text(CHILDREN)
    started = time.monotonic()
    # stdout is a pipe read to its end, as by `corral run p.py | cat`: it ends with the run
    proc = subprocess.Popen([CORRAL, "run", project.file("children.py"), "--fail"],  # noqa: S603
                            cwd=project.wd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())
    out, err = proc.communicate(timeout=50)
    assert time.monotonic() - started < 30, "corral run | cat waited for the task's leftovers"
    assert proc.returncode == 1, err
    for line in ("from child", "from os.system", "disk quota"):
        assert line not in out and line not in err
    pids = [int(p) for p in (project.wd / "pids").read_text().split()]
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]

    logs = corral("logs", "latest", "calls_tool", cwd=project.wd).stdout
    assert [ln for ln in logs.splitlines() if ln in CHILD_LINES] == CHILD_LINES, logs
    assert "from child stderr" in logs.split("stderr.log")[1]

    report = project.wd / "r.html"
    assert corral("report", "latest", "-o", report, cwd=project.wd).returncode == 0
    assert "tool says: disk quota exceeded" in report.read_text()


def test_a_task_may_keep_a_process_running(project: Project) -> None:
    (project.root / "keep.py").write_text(textwrap.dedent('''
        import subprocess
        from pathlib import Path
        from corral import pipeline, task
        from corral.worker.children import keep_children

        @task
        def serve() -> int:
            kept = subprocess.Popen(["sleep", "60"])
            dropped = subprocess.Popen(["sleep", "62"])
            keep_children(kept)
            Path("pids").write_text(f"{kept.pid} {dropped.pid}")
            return 1

        @pipeline
        def keep():
            return serve()
        '''))
    result = invoke("run", project.file("keep.py"))
    assert result.exit_code == 0, result.output
    kept, dropped = (int(p) for p in (project.wd / "pids").read_text().split())
    try:
        assert _gone(dropped)
        assert not _gone(kept)
    finally:
        os.kill(kept, signal.SIGKILL)


def test_large_output_bypasses_the_engine_and_logs_show_the_end(project: Project) -> None:
    (project.root / "loud.py").write_text(textwrap.dedent('''
        import sys
        from corral import pipeline, task

        @task
        def loud(mb: int) -> int:
            block = ("x" * 1023 + "\\n") * 1024
            for i in range(mb):
                sys.stdout.write(block)
            print("the last line")
            return mb

        @pipeline
        def noise(mb: int = 1):
            return loud(mb)
        '''))

    def peak_rss(mb: int) -> int:
        proc = subprocess.Popen([CORRAL, "run", project.file("loud.py"), "--mb", str(mb)],  # noqa: S603
                                cwd=project.wd, stdout=subprocess.DEVNULL, env=_env())
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        assert proc.returncode == 0
        return usage.ru_maxrss * 1024

    small = peak_rss(1)
    big = peak_rss(200)
    assert big - small < 40 * 2**20, (small, big)  # engine and workers: not 200 MB more

    tail = corral("logs", "latest", "loud", cwd=project.wd).stdout
    assert "the last line" in tail and "--full shows all" in tail
    assert len(tail) < 1 << 20
    full = subprocess.run([CORRAL, "logs", "latest", "loud", "--full"], cwd=project.wd,  # noqa: S603
                          stdout=subprocess.PIPE, env=_env(), check=True).stdout
    assert len(full) > 200 * 2**20 and full.rstrip().endswith(b"the last line")


def test_a_timed_out_task_keeps_its_log_and_loses_its_processes(project: Project) -> None:
    (project.root / "slow.py").write_text(textwrap.dedent('''
        import subprocess, time
        from pathlib import Path
        from corral import Resources, pipeline, task

        @task(resources=Resources(walltime=1), retries=0)
        def slow() -> int:
            print("started the tool")
            daemon = subprocess.Popen(["sh", "-c", "sleep 63 >/dev/null & echo $!"],
                                      stdout=subprocess.PIPE, start_new_session=True)
            Path("pids").write_text(daemon.communicate()[0].decode())
            time.sleep(30)
            return 1

        @pipeline
        def slow_run():
            return slow()
        '''))
    result = invoke("run", project.file("slow.py"))
    assert result.exit_code == 1, result.output
    (pid,) = (int(p) for p in (project.wd / "pids").read_text().split())
    assert _gone(pid)
    logs = invoke("logs", "latest", "slow")
    assert "timeout" in logs.output and "started the tool" in logs.output, logs.output
