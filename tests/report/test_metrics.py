from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral.report.metrics import (
    attempt_metrics,
    critical_path,
    run_metrics,
    suggest_memory,
    suggest_walltime,
)
from corral.store import Store

from .report_rows import G, RunBuilder


def test_attempt_metrics_math() -> None:
    task = {"id": 1, "idx": 0, "name": "a", "grp": "a", "resources": {"cores": 4, "memory": 8 * G}}
    attempt = {
        "id": "x", "number": 1, "state": "succeeded", "executor": "slurm", "host": "n1",
        "submitted_at": 100.0, "started_at": 130.0, "ended_at": 230.0, "wall": 100.0,
        "cpu_user": 150.0, "cpu_system": 50.0, "peak_rss": 2 * G,
    }
    m = attempt_metrics(attempt, task)
    assert m.queued == 30.0
    assert m.cpu == 200.0
    assert m.cpu_efficiency == pytest.approx(200 / (100 * 4))
    assert m.memory_ratio == pytest.approx(0.25)
    assert m.cores_used == pytest.approx(2.0)


def test_attempt_resources_override_task_resources() -> None:
    task = {"id": 1, "idx": 0, "name": "a", "resources": {"cores": 4}}
    attempt = {"id": "x", "wall": 10.0, "cpu_user": 10.0, "resources": {"cores": 1, "nodes": 2}}
    assert attempt_metrics(attempt, task).cores == 2


def test_critical_path_on_a_diamond() -> None:
    #   0 (5) -> 1 (10) -> 3 (1)
    #   0 (5) -> 2 (20) -> 3 (1)      longest: 0, 2, 3 = 26
    durations = {0: 5.0, 1: 10.0, 2: 20.0, 3: 1.0, 4: 0.0}
    edges = [(0, 1), (0, 2), (1, 3), (2, 3)]
    path = critical_path(durations, edges, {i: f"t{i}" for i in durations})
    assert path.indices == [0, 2, 3]
    assert path.tasks == ["t0", "t2", "t3"]
    assert path.length == 26.0


def test_critical_path_empty_and_cached_nodes_weigh_zero() -> None:
    assert critical_path({}, [], {}).length == 0
    path = critical_path({0: 0.0, 1: 3.0}, [(0, 1)], {0: "cached", 1: "b"})
    assert path.length == 3.0


def test_run_summary(store: Store, galaxy: RunBuilder) -> None:
    m = run_metrics(store, "run-a")
    s = m.summary
    assert s.n_tasks == 9
    assert s.cache_hits == 1
    assert s.states["succeeded"] == 7 and s.states["failed"] == 1 and s.states["cached"] == 1
    assert s.attempts == 9 and s.retries == 1 and s.failed_attempts == 2
    assert s.wall == pytest.approx(90.0)  # first start t0+0, last end t0+90 (plot)
    cpu = 19 + sum((30 + 10 * i) * 1.1 for i in range(4)) + 14 + 4 + 0.9 * 5
    assert s.cpu_hours == pytest.approx(cpu / 3600)
    core_s = 20 + sum(4 * (30 + 10 * i) for i in range(4)) + 15 + 5 + 5
    assert s.core_hours_requested == pytest.approx(core_s / 3600)
    assert s.cpu_efficiency == pytest.approx(cpu / core_s)
    assert s.hosts == ["node1", "node2"]
    assert s.executor == "local"


def test_critical_path_of_the_run(store: Store, galaxy: RunBuilder) -> None:
    m = run_metrics(store, "run-a")
    assert m.critical_path.tasks == ["download", "prep", "roots[3]", "merge", "plot"]
    assert m.critical_path.length == pytest.approx(20 + 60 + 15 + 5)
    assert {t.name for t in m.tasks if t.critical} == set(m.critical_path.tasks)


def test_group_aggregates(store: Store, galaxy: RunBuilder) -> None:
    roots = next(g for g in run_metrics(store, "run-a").groups if g.name == "roots")
    assert roots.count == 4 and roots.succeeded == 4
    assert roots.wall_mean == pytest.approx(45.0) and roots.wall_max == 60.0
    assert roots.cores_used_mean == pytest.approx(1.1)
    assert roots.cpu_efficiency == pytest.approx(1.1 / 4)
    assert roots.peak_rss_max == int(0.6 * G)
    assert roots.memory_requested == 8 * G and roots.cores_requested == 4


def test_recommendations(store: Store, galaxy: RunBuilder) -> None:
    recs = {(r.group, r.kind): r for r in run_metrics(store, "run-a").recommendations}
    mem = recs[("roots", "memory")]
    assert mem.message.startswith("roots: requested 8G, peak 614.4M — request 1G")
    assert mem.suggested == G
    cores = recs[("roots", "cores")]
    assert "requested 4 cores, used 1.1 on average — request 2" in cores.message
    wall = recs[("roots", "walltime")]
    assert wall.suggested == 600 and "walltime='10m'" in wall.message
    oom = recs[("flaky", "out_of_memory")]
    assert "1 attempt(s) ran out of memory with 2G" in oom.message
    assert ("prep", "memory") not in recs  # no request, no advice
    assert all("\n" not in r.message for r in recs.values())


def test_no_advice_when_requests_fit(store: Store, tmp_path: object) -> None:
    b = RunBuilder(store, "fit", 1.0, store.cas.root.parent)
    b.task("x", resources={"cores": 2, "memory": G, "walltime": 120},
           attempts=[{"wall": 100, "cpu": 190, "peak": int(0.8 * G)}])
    assert run_metrics(store, "fit").recommendations == []


def test_suggestions_round_up() -> None:
    assert suggest_memory(0.6 * G) == G
    assert suggest_memory(3.5 * G) == 5 * G
    assert suggest_walltime(60) == 600
    assert suggest_walltime(3000) == 7200


def test_to_json_is_serialisable(store: Store, galaxy: RunBuilder) -> None:
    data = run_metrics(store, "run-a").to_json(details=True)
    text = json.dumps(data)
    assert "critical_path" in text and len(data["tasks"]) == 9 and len(data["attempts"]) == 9


def test_run_prefix_and_latest(store: Store, galaxy: RunBuilder) -> None:
    assert run_metrics(store, "run-").summary.run_id == "run-a"
    assert run_metrics(store, "latest").summary.run_id == "run-a"


def test_attempts_that_never_ran_are_not_failures(store: Store, tmp_path: Path) -> None:
    """A withdrawn attempt (taken back by a pause) and an abandoned one (left by an engine that
    stopped) did not fail: the summary counts them as attempts, not as failed attempts."""
    run = RunBuilder(store, "run-w", 1_700_000_000.0, tmp_path)
    run.task("a", attempts=[{"state": "withdrawn"}, {"state": "abandoned", "start": 20.0},
                            {"state": "failed", "start": 40.0, "exit_code": 1},
                            {"start": 60.0}])
    s = run_metrics(store, "run-w").summary
    assert s.attempts == 4 and s.failed_attempts == 1
