"""The remote side of the ``ssh`` executor: a small program run on each host over SSH.

:data:`REMOTE_HELPER` is a stdlib-only Python script sent with ``python -c`` (so nothing has to
be installed for it); ``argv[1]`` is the action (``launch``, ``status``, ``signal``, ``probe``),
standard input a JSON list of items, and the answer one line ``CORRAL-JSON:{...}`` on standard
output, read by :func:`parse_answer` (so login-script noise around it is ignored). No path or
value is ever interpolated into a shell command line.
"""

from __future__ import annotations

import json
from typing import Any

_JSON_TAG = "CORRAL-JSON:"

# Runs on the host with the remote python (stdlib only). argv[1] is the action; stdin is a JSON
# list of items; the answer is one line "CORRAL-JSON:{...}" so login-script noise is ignored.
REMOTE_HELPER = r"""
import json, os, signal, subprocess, sys, time
HAVE_PROC = os.path.isdir("/proc/self")
def alive(pid, d):
    if not pid:
        return False
    if HAVE_PROC:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as fh:
                return d.encode() in fh.read()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
def load(path, n=0):
    try:
        with open(path, "rb") as fh:
            if not n:
                return json.loads(fh.read())
            fh.seek(max(0, os.path.getsize(path) - n))
            return fh.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return None
def launch(it):
    d = it["dir"]
    lock = os.path.join(d, ".launch")
    pidfile = os.path.join(lock, "pid")
    os.makedirs(d, exist_ok=True)
    try:
        os.mkdir(lock)
    except FileExistsError:
        for _ in range(50):
            pid = load(pidfile)
            if pid:
                return {"pid": pid}
            time.sleep(0.1)
        return {"error": "a previous launch left no pid in " + lock}
    os.makedirs(it["cwd"], exist_ok=True)
    env = dict(os.environ)
    env.update(it["env"])
    out = open(it["stdout"], "ab")
    err = out if it["stderr"] == it["stdout"] else open(it["stderr"], "ab")
    try:
        proc = subprocess.Popen(it["argv"], cwd=it["cwd"], env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
    except OSError as exc:
        return {"error": "cannot start %s: %s" % (it["argv"][0], exc)}
    tmp = pidfile + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(str(proc.pid))
    os.replace(tmp, pidfile)
    return {"pid": proc.pid}
def status(it):
    d = it["dir"]
    rec = {"alive": alive(it.get("pid"), d)}
    rec["marker"] = load(os.path.join(d, "exit.json"))
    rec["started"] = load(os.path.join(d, "started.json"))
    if rec["marker"] is None and not rec["alive"]:
        rec["tail"] = load(os.path.join(d, it["log"]), 2000)
    return rec
def send(it):
    if not alive(it.get("pid"), it["dir"]):
        return False
    try:
        os.killpg(it["pid"], getattr(signal, it["signal"]))
    except ProcessLookupError:
        return False
    return True
def probe(it):
    import importlib.util
    return {"cpus": os.cpu_count() or 1, "home": os.path.expanduser("~"),
            "corral": importlib.util.find_spec("corral.worker") is not None,
            "python": sys.version.split()[0]}
action = {"launch": launch, "status": status, "signal": send, "probe": probe}[sys.argv[1]]
answer = {it["id"]: action(it) for it in json.load(sys.stdin)}
sys.stdout.write("CORRAL-JSON:" + json.dumps(answer) + "\n")
"""


def parse_answer(text: str) -> dict[str, Any]:
    """The JSON answer of the remote helper (the line tagged ``CORRAL-JSON:``)."""
    for line in reversed(text.splitlines()):
        if line.startswith(_JSON_TAG):
            data: dict[str, Any] = json.loads(line[len(_JSON_TAG) :])
            return data
    raise ValueError(f"no answer from the remote helper in {text[-500:]!r}")


__all__ = ["REMOTE_HELPER", "parse_answer"]
