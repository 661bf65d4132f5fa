"""Short shell commands on the local executor with every slot taken: the next command is
handed to the spawner behind a running one and starts the moment it ends. Never more than
``-j`` at once, each command once, and a cancel reaches the commands still waiting at the
spawner. (Commands are handed over once others of their name were seen to be short.)"""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import corral
from corral.executors import create_executor
from corral.executors.base import Completion, ExecutorContext, Outcome, TaskKind, TaskSpec
from corral.resources import Resources
from corral.worker.execute import ShellPayload

from .corehelp import Helper, wait_for

TIMED = '''
from corral import pipeline, shell

@pipeline
def timed(n: int = 40):
    # each command notes when it started and ended (ns), in a file of its own
    return [shell("s=$(date +%s%N); sleep 0.05; echo $s $(date +%s%N) > spans/{params.i}",
                  params={"i": i}, name="step") for i in range(n)]
'''

SLEEPERS = '''
from corral import pipeline, shell

@pipeline
def sleepers(n: int = 12):
    # the first four are short: the next ones are handed over behind the two that sleep
    return [shell("touch started/{params.i}; sleep {params.t}",
                  params={"i": i, "t": 0 if i < 4 else 30}, name="nap") for i in range(n)]
'''


def _most_at_once(spans: list[tuple[int, int]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        now += step
        most = max(most, now)
    return most


def test_never_more_than_j_commands_and_each_once(helper: Helper) -> None:
    (helper.workdir / "spans").mkdir()
    pipe = helper.load(TIMED)
    r = helper.run(pipe, {"n": 40}, jobs=2)
    assert r.ok, r.errors
    files = sorted((helper.workdir / "spans").iterdir(), key=lambda p: int(p.name))
    assert [p.name for p in files] == [str(i) for i in range(40)]
    spans = [tuple(int(x) for x in p.read_text().split()) for p in files]
    assert _most_at_once(spans) <= 2  # type: ignore[arg-type]
    attempts = helper.attempts(r.run_id)
    assert len(attempts) == 40 and {a["state"] for a in attempts} == {"succeeded"}
    # a command started by the spawner when another ended is recorded as running from then
    assert all(a["started_at"] is not None and a["ended_at"] >= a["started_at"] for a in attempts)


def test_cancel_reaches_the_commands_waiting_at_the_spawner(helper: Helper) -> None:
    (helper.workdir / "started").mkdir()
    pipe = helper.load(SLEEPERS)
    handle = corral.start(pipe, {"n": 12}, jobs=2, workdir=helper.workdir)
    started = helper.workdir / "started"
    wait_for(lambda: len(list(started.iterdir())) >= 6, what="six commands to start")
    time.sleep(0.3)  # the engine hands the next ones over behind the two sleeping
    handle.cancel()
    began = time.monotonic()
    assert handle.wait(timeout=30).value == "cancelled"
    assert time.monotonic() - began < 15
    time.sleep(0.5)
    assert len(list(started.iterdir())) == 6, sorted(p.name for p in started.iterdir())
    # the spawner creates a command's stdout.log as it starts it: a command it started and the
    # cancel killed at once (before it could touch its file) would have one too
    logs = list((helper.workdir / ".corral" / "work").rglob("*-nap*/stdout.log"))
    assert len(logs) == 6, logs
    states = {t["name"]: t["state"] for t in handle.tasks()}
    assert sorted(states.values()) == ["cancelled"] * 8 + ["succeeded"] * 4, states


class _Listener:
    def submitted(self, attempt_id: str, native_id: str) -> None:
        pass

    def started(self, attempt_id: str, when: float, host: str | None) -> None:
        pass


def test_a_command_cancelled_in_the_middle_of_a_chain_lets_the_next_run(tmp_path: Path) -> None:
    """One slot: ``b``, ``c`` and ``d`` wait at the spawner behind ``a``, each behind the one
    before. Cancelling ``b`` alone: ``c`` waits for ``a`` now, and runs, and so does ``d``."""
    (tmp_path / "project").mkdir()
    ex = create_executor("local", {"prestart": False},
                         ExecutorContext("h1", tmp_path / "work", tmp_path / "project", 1))
    ex.start(_Listener())

    def spec(name: str, command: str) -> TaskSpec:
        return TaskSpec(attempt_id=f"h1.{name}.1", run_id="h1", task_key=name * 64,
                        name=name, group="a" if name == "a" else "t", kind=TaskKind.SHELL,
                        payload=pickle.dumps(ShellPayload(command, [])), resources=Resources(),
                        attempt=1, workdir=tmp_path / "work" / name, cwd=tmp_path / "project")

    specs = [spec("a", "sleep 1; touch a"), *(spec(x, f"touch {x}") for x in "bcd")]
    done: dict[str, Completion] = {}
    try:
        warm = spec("w", "true")  # a command of b, c and d's name, seen to be short
        ex.submit([warm])
        while not done:
            done.update((c.attempt_id, c) for c in ex.poll(0.2))
        assert done.pop(warm.attempt_id).outcome is Outcome.SUCCEEDED
        ex.submit(specs)
        ex.cancel(["h1.b.1"])
        deadline = time.monotonic() + 30
        while len(done) < 4 and time.monotonic() < deadline:
            for c in ex.poll(0.2):
                assert c.attempt_id not in done, c
                done[c.attempt_id] = c
    finally:
        ex.shutdown()
    assert {k: c.outcome for k, c in done.items()} == {
        "h1.a.1": Outcome.SUCCEEDED, "h1.b.1": Outcome.CANCELLED,
        "h1.c.1": Outcome.SUCCEEDED, "h1.d.1": Outcome.SUCCEEDED,
    }
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["a", "c", "d"]
