"""A small, long-lived process that starts the local executor's shell commands.

A command forked from the engine would inherit the engine's memory high-water mark in its
``ru_maxrss`` (the kernel carries the old address space's peak across ``exec``), so peak memory
measured with ``wait4`` would never be below the engine's size. Commands are therefore forked by
this process, which is small (``python -I -S``, stdlib only), reaps them with ``wait4`` and
reports their exact CPU time and peak memory. One process serves the whole run, so a command
costs a fork and an exec, not an interpreter start.

Protocol, one JSON object per line. Requests on stdin: ``{"id", "argv", "cwd", "stdout",
"stderr", "env"}`` starts a command; with ``"after": ID`` it starts when the command ``ID`` ends
or could not start (at once if that one is neither running nor waiting), so that the next
command of a busy executor starts the moment a slot frees, without a round trip through the
engine; ``{"drop": ID}`` forgets such a command not started yet (what waited for it waits for
what it waited for). Replies on stdout: ``{"id", "pid"}`` once started (or ``{"id",
"error"}``), then ``{"id", "status", "utime", "stime", "maxrss"}`` when it ends (status as from
``os.waitstatus_to_exitcode``: negative for a signal), always before the start of the command
that waited for it; ``{"id", "dropped": true|false}`` for a drop (false: it had started). When a
command ends, what it left running in its process group (``cmd &``) gets SIGTERM, and SIGKILL
a second later.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from typing import IO, Any

SOURCE = r'''
GRACE = 1.0
import json, os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
inp = sys.stdin.buffer
out = sys.stdout
children = {}  # pidfd -> (id, pid)
running = set()  # ids of the commands started and not ended
waiting = {}  # id of a running or waiting command -> the request to start when it ends
queued = set()  # ids of the requests in waiting
leftovers = []  # (deadline, process group of an ended command): SIGKILL then
buf = b""
def killpg(pgid, sig):
    try: os.killpg(pgid, sig)
    except OSError: pass
def reply(obj):
    out.write(json.dumps(obj) + "\n"); out.flush()
def start(req):
    try:
        os.chdir(req["cwd"])
        pid = os.posix_spawnp(req["argv"][0], req["argv"], req["env"], setsid=True, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_OPEN, 2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        ])
    except OSError as exc:
        reply({"id": req["id"], "error": str(exc)})
        follow(req["id"]); return
    children[os.pidfd_open(pid)] = (req["id"], pid)
    running.add(req["id"])
    reply({"id": req["id"], "pid": pid})
def follow(lead):
    nxt = waiting.pop(lead, None)
    if nxt is not None:
        queued.discard(nxt["id"])
        start(nxt)
def handle(req):
    if "drop" in req:
        gone = req["drop"]
        for lead, nxt in list(waiting.items()):
            if nxt["id"] == gone:
                queued.discard(gone)
                del waiting[lead]
                if gone in waiting:  # what waited for it waits for its lead now
                    waiting[lead] = waiting.pop(gone)
                reply({"id": gone, "dropped": True}); return
        reply({"id": gone, "dropped": False}); return
    lead = req.get("after")
    if lead is not None and (lead in running or lead in queued):
        waiting[lead] = req
        queued.add(req["id"])
    else:
        start(req)
while True:
    now = time.monotonic()
    while leftovers and leftovers[0][0] <= now:
        killpg(leftovers.pop(0)[1], signal.SIGKILL)
    wait = max(0.0, leftovers[0][0] - now) if leftovers else None
    ready, _, _ = select.select([0, *children], [], [], wait)
    for fd in ready:
        if fd == 0:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                for cid, pid in children.values():
                    killpg(pid, signal.SIGKILL)
                for _, pgid in leftovers:
                    killpg(pgid, signal.SIGKILL)
                sys.exit(0)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                handle(json.loads(line))
        else:
            cid, pid = children.pop(fd)
            os.close(fd)
            _, status, ru = os.wait4(pid, 0)
            # what the command left running in its group (cmd &) ends with it: TERM, then KILL
            killpg(pid, signal.SIGTERM)
            leftovers.append((time.monotonic() + GRACE, pid))
            running.discard(cid)
            reply({"id": cid, "status": os.waitstatus_to_exitcode(status), "utime": ru.ru_utime,
                   "stime": ru.ru_stime, "maxrss": ru.ru_maxrss * 1024})
            follow(cid)
'''


class Spawner:
    """Client side: start commands, read their start and exit reports."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, our own source
            [sys.executable, "-I", "-S", "-c", SOURCE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._buf = b""
        self.finished: list[dict[str, Any]] = []

    def fileno(self) -> int:
        return self._out

    def start(self, ident: str, argv: list[str], cwd: str, stdout: str, stderr: str,
              env: dict[str, str], after: str | None = None) -> None:
        """Ask for a command to be started (``after``: when that command ends); its pid comes
        back through :meth:`collect`."""
        req: dict[str, Any] = {"id": ident, "argv": argv, "cwd": cwd, "stdout": stdout,
                               "stderr": stderr, "env": env}
        if after is not None:
            req["after"] = after
        self._send(req)

    def drop(self, ident: str) -> None:
        """Forget a command given ``after`` another, if it has not started; the answer
        (``{"id", "dropped"}``) comes back through :meth:`collect`."""
        self._send({"drop": ident})

    def _send(self, req: dict[str, Any]) -> None:
        self._in.write(json.dumps(req).encode() + b"\n")
        self._in.flush()

    def collect(self) -> list[dict[str, Any]]:
        """Reports received so far, in order: ``{"id", "pid"}`` (started), ``{"id", "error"}``
        (could not start), ``{"id", "status", ...}`` (ended) and ``{"id", "dropped"}``."""
        self.finished.extend(m for m in self._read(block=False))
        done, self.finished = self.finished, []
        return done

    def _read(self, block: bool) -> list[dict[str, Any]]:
        while True:
            try:
                chunk = os.read(self._out, 1 << 16)
            except BlockingIOError:
                chunk = None
            if chunk == b"":
                raise OSError("the shell spawner process died")
            if chunk:
                self._buf += chunk
            if b"\n" in self._buf or not block:
                break
            select.select([self._out], [], [], 1.0)
        lines = self._buf.split(b"\n")
        self._buf = lines.pop()
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        try:
            self._in.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
