"""The remote side of the ``ssh`` executor: a small program run on each host over SSH.

:data:`REMOTE_HELPER` is a stdlib-only Python script sent with ``python -c`` (so nothing has to
be installed for it); ``argv[1]`` is the action (``launch``, ``status``, ``signal``, ``probe``, ``place``),
standard input a JSON list of items, and the answer one line ``CORRAL-JSON:{...}`` on standard
output, read by :func:`parse_answer` (so login-script noise around it is ignored). No path or
value is ever interpolated into a shell command line.

``launch`` forks a *watcher* per attempt: it leaves the SSH session (its own session, standard
streams on ``/dev/null``), starts the worker in a further new session (so the worker leads its
own process group, which a cancel signals), reports the worker's pid and then waits for it and
writes ``worker-exit.json`` (``{"returncode": ...}``; negative: killed by that signal) in the
attempt directory. A worker gone without ``exit.json`` is thus known to have been killed (and by
which signal) or to have exited; ``status`` reports that record as ``exit``.

``status`` also enforces memory requests: for an item with ``memory`` (bytes), the RSS of the
worker's whole process tree is read from ``/proc`` (``/proc/PID/task/*/children`` and
``/proc/PID/statm``; the process table's ppids where the kernel has no ``children`` files), and
a tree above it is killed at once (SIGKILL to its process group) and reported as ``oom`` (the
RSS seen), in the same call. Without ``/proc`` memory is not measured.

``place`` serves content-addressed transfers (:mod:`corral.transport.transfer`): for each item,
whether the host's cache holds the content (``cache``: the file named by its digest, of the
expected ``size``; one of another size is removed, to be sent again) and, if so, a hard link
(a copy across file systems) of it at ``dest``, put in place by rename. An item with ``src``
instead keeps a file made on the host (a large result) in the cache: hard-linked there under its
digest unless the cache has it, so it is not sent back to the host later.
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
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
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
    r, w = os.pipe()
    watcher = os.fork()
    if watcher == 0:
        os.close(r)
        watch(it, w)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        said = fh.read().decode("utf-8", "replace")
    if not said.isdigit():
        return {"error": "cannot start %s: %s" % (it["argv"][0], said[1:] or "the watcher died")}
    save(os.path.join(lock, "watcher"), watcher)
    save(pidfile, int(said))
    return {"pid": int(said)}
def save(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(value))
    os.replace(tmp, path)
def watch(it, w):
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        env = dict(os.environ)
        # bash sources ~/.bashrc when SSH_CLIENT is set and it is the top shell: a task's
        # `bash -c` would run the login files again (slow, and their messages land in the
        # task's stderr). The login shell's environment is inherited already.
        for name in ("SSH_CLIENT", "SSH2_CLIENT"):
            env.pop(name, None)
        env.update(it["env"])
        out = open(it["stdout"], "ab")
        err = out if it["stderr"] == it["stdout"] else open(it["stderr"], "ab")
        try:
            proc = subprocess.Popen(it["argv"], cwd=it["cwd"], env=env, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            os.write(w, ("!%s" % exc).encode())
            os._exit(0)
        out.close()
        err.close()
        os.write(w, str(proc.pid).encode())
        os.close(w)
        rc = proc.wait()
        save(os.path.join(it["dir"], "worker-exit.json"), {"returncode": rc, "ended": time.time()})
    finally:
        os._exit(0)
def running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
def ended(d):
    watcher = load(os.path.join(d, ".launch", "watcher"))
    for _ in range(40):
        rec = load(os.path.join(d, "worker-exit.json"))
        if rec is not None or not watcher or not running(watcher):
            return rec
        time.sleep(0.05)
    return None
def kids(pid, table):
    if table is not None:
        return table.get(pid, [])
    out = []
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as fh:
                out.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            pass
    return out
def ppids():
    table = {}
    for name in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % name, "rb") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table.setdefault(ppid, []).append(int(name))
    return table
def tree_rss(pid):
    has_children = os.path.exists("/proc/%d/task/%d/children" % (pid, pid))
    table = None if has_children else ppids()
    total, stack, seen = 0, [pid], set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open("/proc/%d/statm" % p, "rb") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
        stack.extend(kids(p, table))
    return total
def limit(it, rec):
    pid, d = it["pid"], it["dir"]
    rss = tree_rss(pid)
    if rss <= it["memory"] or os.path.exists(os.path.join(d, "exit.json")):
        return
    rec["oom"] = rss
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    for _ in range(40):
        rec["alive"] = alive(pid, d)
        if not rec["alive"]:
            break
        time.sleep(0.05)
def status(it):
    d = it["dir"]
    rec = {"alive": alive(it.get("pid"), d)}
    if rec["alive"] and it.get("memory") and HAVE_PROC:
        limit(it, rec)
    rec["marker"] = load(os.path.join(d, "exit.json"))
    rec["started"] = load(os.path.join(d, "started.json"))
    if rec["marker"] is None and not rec["alive"]:
        rec["tail"] = load(os.path.join(d, it["log"]), 2000)
        rec["exit"] = ended(d)
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
    root = it.get("root")  # the remote work directory, as the workers will see it (no symlinks)
    return {"cpus": os.cpu_count() or 1, "home": os.path.expanduser("~"),
            "root": os.path.realpath(os.path.expanduser(root)) if root else None,
            "corral": importlib.util.find_spec("corral.worker") is not None,
            "python": sys.version.split()[0]}
def keep(it):
    cached, src = it["cache"], it["src"]
    try:
        if os.stat(src).st_size != it["size"]:
            return {"placed": False}
        if not os.path.exists(cached):
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            os.link(src, cached)
    except OSError:
        return {"placed": os.path.exists(cached)}
    return {"placed": True}
def place(it):
    cached = it["cache"]
    if it.get("src"):
        return keep(it)
    try:
        if os.stat(cached).st_size != it["size"]:
            os.unlink(cached)  # a partial or damaged copy: sent again
            return {"placed": False}
    except OSError:
        return {"placed": False}
    dest = it.get("dest")
    if dest:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        tmp = "%s.%d.tmp" % (dest, os.getpid())
        try:
            os.link(cached, tmp)
        except OSError:
            import shutil
            shutil.copyfile(cached, tmp)
        os.replace(tmp, dest)
    return {"placed": True}
action = {"launch": launch, "status": status, "signal": send, "probe": probe, "place": place}[sys.argv[1]]
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
