"""A tiny fake batch scheduler shared by the fake PBS and LSF commands (tests only).

State lives in ``$FAKE_SCHED_DIR`` (one JSON file per job, guarded by a lock file). Submitting a
job starts a detached runner process that really runs the script, element by element for arrays
(honouring the throttle, the index variable and a walltime), and records exit codes. The command
front-ends (``pbs/qsub``, ``lsf/bjobs`` ...) print what the real tools print.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TIME_FMT = "%a %b %d %H:%M:%S %Y"


def state_dir() -> Path:
    d = Path(os.environ.get("FAKE_SCHED_DIR", f"/tmp/fakesched-{os.getuid()}"))
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def locked() -> Iterator[Path]:
    d = state_dir()
    with open(d / "lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield d
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(job_id: str) -> dict[str, Any] | None:
    path = state_dir() / "jobs" / f"{job_id}.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return None


def save(job: dict[str, Any]) -> None:
    path = state_dir() / "jobs" / f"{job['id']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(job))
    os.replace(tmp, path)


def directives(script: str, prefix: str) -> list[list[str]]:
    """The argument lists of ``#PBS``/``#BSUB`` lines."""
    out = []
    for line in script.splitlines():
        if line.startswith(prefix + " "):
            out.append(shlex.split(line[len(prefix) + 1 :]))
    return out


def new_job(
    script_text: str, name: str, indices: list[int], throttle: int, stdout: str, stderr: str,
    walltime: float | None, index_var: str, deps: list[str], token: dict[str, str],
) -> dict[str, Any]:
    """Register a job and start its runner; returns the job record."""
    with locked() as d:
        counter = d / "counter"
        number = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(number))
        script_path = d / "jobs" / f"{number}.sh"
        script_path.write_text(script_text)
        job: dict[str, Any] = {
            "id": str(number), "name": name, "script": str(script_path), "array": bool(indices),
            "throttle": throttle or len(indices) or 1, "stdout": stdout, "stderr": stderr,
            "walltime": walltime, "index_var": index_var, "deps": deps, "token": token,
            "submitted": time.time(), "cwd": os.getcwd(),
            "elements": {str(i): {"state": "Q"} for i in (indices or [0])},
        }
        save(job)
    subprocess.Popen(  # noqa: S603 - test helper, argv list
        [sys.executable, os.path.abspath(__file__), "run", job["id"]],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return job


def _path(pattern: str, job: dict[str, Any], index: str) -> str:
    for key, value in job["token"].items():
        pattern = pattern.replace(key, index if value == "index" else job["id"])
    return pattern


def _deps_ok(job: dict[str, Any]) -> bool | None:
    """True when every dependency succeeded, False if one failed, None while waiting."""
    for dep in job["deps"]:
        other = load(dep)
        if other is None:
            return False
        states = [e["state"] for e in other["elements"].values()]
        if any(s in ("Q", "R") for s in states):
            return None
        if any(e.get("exit") != 0 for e in other["elements"].values()):
            return False
    return True


def _start(job: dict[str, Any], index: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if job["array"]:
        env[job["index_var"]] = index
    env["FAKE_JOB_ID"] = job["id"]
    out = open(_path(job["stdout"], job, index), "ab")
    err = open(_path(job["stderr"], job, index), "ab")
    proc = subprocess.Popen(  # noqa: S603 - test helper
        ["/bin/bash", job["script"]], cwd=job["cwd"], env=env, stdout=out, stderr=err,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    out.close()
    err.close()
    return proc


def run(job_id: str) -> None:
    """The runner: start elements as the throttle allows; record how each one ended."""
    procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    while True:
        with locked():
            job = load(job_id)
            if job is None:
                return
            elements = job["elements"]
            ok = _deps_ok(job) if job["deps"] else True
            for index, (proc, started) in list(procs.items()):
                el = elements[index]
                rc = proc.poll()
                over = job["walltime"] and time.time() - started > job["walltime"]
                if rc is None and over:
                    os.killpg(proc.pid, signal.SIGKILL)
                    el["killed"] = "walltime"
                    proc.wait()
                    rc = proc.returncode
                if rc is not None:
                    el.update(state="F", exit=rc, ended=time.time())
                    del procs[index]
            for index, el in elements.items():
                if el["state"] == "Q" and el.get("cancelled"):
                    el.update(state="F", ended=time.time())
                elif el["state"] == "Q" and ok is False:
                    el.update(state="F", cancelled=True, ended=time.time())
                elif el["state"] == "Q" and ok and len(procs) < job["throttle"]:
                    proc = _start(job, index)
                    procs[index] = (proc, time.time())
                    el.update(state="R", pid=proc.pid, started=time.time())
            save(job)
            if all(e["state"] == "F" for e in elements.values()):
                return
        time.sleep(0.05)


def cancel(job_id: str, indices: list[str] | None) -> bool:
    """Mark elements cancelled and kill running ones; False if the job is unknown."""
    with locked():
        job = load(job_id)
        if job is None:
            return False
        for index, el in job["elements"].items():
            if indices is not None and index not in indices:
                continue
            if el["state"] in ("Q", "R"):
                el["cancelled"] = True
            if el["state"] == "R" and el.get("pid"):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(el["pid"], signal.SIGTERM)
        save(job)
    return True


def fmt_time(t: float | None) -> str:
    return time.strftime(TIME_FMT, time.localtime(t)) if t else ""


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
