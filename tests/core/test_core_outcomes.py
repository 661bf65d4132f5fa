"""The outcome table of docs/concepts.md, through the real command line: for each way an
attempt can end, the task's state, its dependent's state, the run's state, the exit status of
`corral run` and of `corral status --watch`. The attempts are ended by a scripted executor (the
executor contract's outcomes, as every real executor reports them); the real executors'
classification of scheduler events into these outcomes is tested in tests/batch and tests/remote
(tests/batch/test_outside_cancel.py runs the cancelled-outside row on each real one)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from corral.cli.app import app
from corral.executors import register, unregister
from corral.executors.base import (
    Completion,
    Executor,
    ExecutorContext,
    Listener,
    Metrics,
    Outcome,
    TaskSpec,
)

PIPE = '''
from corral import pipeline, shell

@pipeline
def two(retries: int = 0, retry_cancelled: bool = False):
    a = shell("echo a > {output}", outputs="a.txt", name="victim", retries=retries,
              retry_cancelled=retry_cancelled)
    return shell("cat {input} > {output}", inputs=a, outputs="b.txt", name="after")
'''


class ScriptedExecutor(Executor):
    """Ends the attempts of task ``victim`` as ``SCRIPT`` says (one outcome per attempt, the
    last one repeated), every other attempt by running nothing and succeeding; ``hold`` never
    ends until Corral cancels it."""

    kind = "scripted"
    SCRIPT: list[str] = []

    def __init__(self, ctx: ExecutorContext) -> None:
        self.ctx = ctx
        self.done: list[Completion] = []
        self.held: set[str] = set()
        self.victim_attempts = 0

    @classmethod
    def from_options(cls, options: Any, ctx: ExecutorContext) -> ScriptedExecutor:
        return cls(ctx)

    def start(self, listener: Listener) -> None:
        self.listener = listener

    def submit(self, batch: Sequence[TaskSpec]) -> None:
        for spec in batch:
            self.listener.submitted(spec.attempt_id, f"job-{spec.attempt_id[-6:]}")
            self.listener.started(spec.attempt_id, time.time(), "node1")
            if spec.name != "victim":
                self._succeed(spec)
                continue
            self.victim_attempts += 1
            outcome = self.SCRIPT[min(self.victim_attempts, len(self.SCRIPT)) - 1]
            if outcome == "hold":
                self.held.add(spec.attempt_id)
            elif outcome == "succeeded":
                self._succeed(spec)
            else:
                self.done.append(Completion(spec.attempt_id, Outcome(outcome),
                                            Metrics(native_id=f"job-{spec.attempt_id[-6:]}"),
                                            error=f"the scheduler said {outcome}"))

    def _succeed(self, spec: TaskSpec) -> None:
        for out in ("a.txt", "b.txt"):  # what the commands would write
            if spec.name == ("victim" if out == "a.txt" else "after"):
                (spec.cwd / out).write_text("a\n")
        self.done.append(Completion(spec.attempt_id, Outcome.SUCCEEDED, Metrics(exit_code=0)))

    def poll(self, timeout: float) -> list[Completion]:
        if not self.done:
            time.sleep(min(timeout, 0.05))
        done, self.done = self.done, []
        return done

    def cancel(self, attempt_ids: Sequence[str]) -> None:
        for aid in attempt_ids:
            if aid in self.held:
                self.held.discard(aid)
                self.done.append(Completion(aid, Outcome.CANCELLED, error="cancelled"))

    def shutdown(self) -> None:
        return None


# outcomes of victim's attempts, retries -> victim, after, run, `corral run` exit, --watch exit
# (retries 9: retries=1 with retry_cancelled=True)
TABLE = [
    (["succeeded"], 0, "succeeded", "succeeded", "succeeded", 0),
    (["failed"], 0, "failed", "skipped", "failed", 1),
    (["out_of_memory"], 0, "failed", "skipped", "failed", 1),
    (["timeout"], 0, "failed", "skipped", "failed", 1),
    (["node_failure"], 0, "failed", "skipped", "failed", 1),
    (["preempted"], 0, "failed", "skipped", "failed", 1),
    (["lost"], 0, "failed", "skipped", "failed", 1),
    (["cancelled"], 0, "cancelled", "skipped", "failed", 1),  # cancelled outside Corral
    (["cancelled"], 2, "cancelled", "skipped", "failed", 1),  # ... and not retried
    (["timeout", "succeeded"], 1, "succeeded", "succeeded", "succeeded", 0),
    (["out_of_memory", "lost"], 1, "failed", "skipped", "failed", 1),
    (["cancelled", "succeeded"], 9, "succeeded", "succeeded", "succeeded", 0),  # opted in
    (["cancelled", "cancelled"], 9, "cancelled", "skipped", "failed", 1),
]


@pytest.fixture
def scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    register("scripted", f"{__name__}:ScriptedExecutor")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.py").write_text(PIPE)
    yield tmp_path
    unregister("scripted")


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.mark.parametrize(("script", "retries", "victim", "after", "run", "code"), TABLE,
                         ids=["-".join(row[0]) + f"-r{row[1]}" for row in TABLE])
def test_outcome_table(scripted: Path, script: list[str], retries: int, victim: str, after: str,
                       run: str, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ScriptedExecutor, "SCRIPT", script)
    options = ["--retries", "1", "--retry-cancelled", "true"] if retries == 9 else ["--retries", str(retries)]
    done = _cli("run", "two.py", "-e", "scripted", *options, "-q")
    assert done.exit_code == code, done.output
    status = json.loads(_cli("status", "latest", "--json").stdout)
    tasks = {t["name"]: t for t in status["tasks"]}
    assert (tasks["victim"]["state"], tasks["after"]["state"], status["run"]["state"]) == (victim, after, run)
    assert _cli("status", "latest", "--watch", "--interval", "0.1").exit_code == code
    if run != "succeeded":
        assert "result:" not in done.stdout  # no value naming an output that was not produced
        assert status["run"]["error"] and not (scripted / "b.txt").exists()
    if script[-1] == "cancelled":
        assert "cancelled outside Corral (scripted job job-" in tasks["victim"]["error"]
        assert len(json.loads(_cli("runs", "--json").stdout)) == 1


def test_cancel_by_corral_cancels_the_dependents(scripted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import corral

    monkeypatch.setattr(ScriptedExecutor, "SCRIPT", ["hold"])
    handle = corral.start(corral.load_pipeline(scripted / "two.py"), {}, executor="scripted", workdir=scripted)
    deadline = time.monotonic() + 20
    while not any(a["state"] == "running" for a in handle.attempts()) and time.monotonic() < deadline:
        time.sleep(0.05)
    handle.cancel()
    assert handle.wait(timeout=30).value == "cancelled"
    assert {t["name"]: t["state"] for t in handle.tasks()} == {"victim": "cancelled", "after": "cancelled"}
    assert _cli("status", "latest", "--watch", "--interval", "0.1").exit_code == 1
