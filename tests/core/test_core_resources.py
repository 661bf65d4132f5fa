"""Resources: parsing, one-line errors, resources as a function of the attempt, retries."""

from __future__ import annotations

import pytest

from corral import Resources, pipeline, task
from corral.errors import ResourceError, UsageError
from corral.resources import format_walltime, parse_memory, parse_walltime, resolve_resources

from .corehelp import Helper

G = 1024**3
M = 1024**2


@pytest.mark.parametrize(("text", "expected"), [
    ("2G", 2 * G), ("2g", 2 * G), ("512M", 512 * M), ("512MB", 512 * M), ("1.5GiB", int(1.5 * G)),
    ("100K", 100 * 1024), ("1T", 1024 * G), ("4096", 4096), (4096, 4096), (" 3 G ", 3 * G),
    (None, None),
])
def test_memory_formats(text: object, expected: int | None) -> None:
    assert parse_memory(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ("10m", 600), ("2h", 7200), ("1d", 86400), ("90s", 90), ("1:30:00", 5400), ("05:00", 300),
    ("1-00:00:00", 86400), ("2-01:00:00", 2 * 86400 + 3600), (3600, 3600), (1.2, 2), ("45", 45),
    (None, None),
])
def test_walltime_formats(text: object, expected: int | None) -> None:
    assert parse_walltime(text) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [
    {"memory": "lots"}, {"memory": "-1G"}, {"memory": 0}, {"memory": True}, {"memory": "2X"},
    {"walltime": "soon"}, {"walltime": 0}, {"walltime": "1:2:3:4"}, {"walltime": "x-01:00:00"},
    {"walltime": "-5m"}, {"cores": 0}, {"cores": 1.5}, {"cores": True}, {"nodes": 0},
    {"gpus": -1}, {"queue": ""}, {"queue": "a\nb"}, {"native": {"slurm": "--exclusive"}},
])
def test_bad_resources_give_one_line_resource_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ResourceError) as info:
        Resources(**kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, UsageError)
    field = next(iter(kwargs))
    assert field in message or "walltime" in message


def test_resources_normalised_and_round_trip() -> None:
    r = Resources(cores=4, memory="1.5G", walltime="1:00:00", native={"slurm": ["--x"]})
    assert r.memory == int(1.5 * G) and r.walltime == 3600
    assert r.memory_bytes == int(1.5 * G) and r.walltime_seconds == 3600
    assert Resources.from_dict(r.to_dict()) == r
    assert format_walltime(r.walltime_seconds) == "01:00:00"
    with pytest.raises(ResourceError, match="unknown resource field"):
        Resources.from_dict({"mem": "2G"})
    with pytest.raises(ResourceError, match="not Resources"):
        resolve_resources(lambda attempt: "2G", 1)  # type: ignore[arg-type,return-value]
    assert resolve_resources(lambda a: Resources(memory=f"{a}G"), 3).memory == 3 * G
    with pytest.raises(UsageError, match="resources="):
        task(resources="2G")  # type: ignore[call-overload]


@task(resources=lambda attempt: Resources(memory=f"{512 * attempt}M"), retries=1)
def needs_a_gigabyte() -> int:
    import os

    granted = int(os.environ["CORRAL_MEMORY"])
    if granted < 1024**3:
        raise MemoryError(f"attempt {os.environ['CORRAL_ATTEMPT']}: only {granted} bytes")
    return granted


def test_resources_as_a_function_of_the_attempt(helper: Helper) -> None:
    @pipeline
    def grow() -> int:
        return needs_a_gigabyte()

    r = helper.run(grow)
    assert r.ok, r.errors
    assert r.value == 1024**3
    rows = helper.attempts(r.run_id)
    assert [a["number"] for a in rows] == [1, 2]
    first, second = rows
    assert first["state"] == "out_of_memory"
    assert "only 536870912 bytes" in first["error"]
    assert first["resources"]["memory"] == 512 * M
    assert second["state"] == "succeeded"
    assert second["resources"]["memory"] == 1024 * M
    assert helper.tasks(r.run_id)["needs_a_gigabyte"]["attempts"] == 2


@task(retries=2)
def flaky(marker: str) -> str:
    """Fails until it has been called three times (counted in a file)."""
    from pathlib import Path

    p = Path(marker)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    if n < 3:
        raise RuntimeError(f"flaky call {n}")
    return f"ok after {n}"


@task(retries=1)
def always_fails() -> None:
    raise RuntimeError("never works")


def test_retries(helper: Helper) -> None:
    @pipeline
    def retried() -> tuple[str, None]:
        return flaky("count.txt"), always_fails()

    r = helper.run(retried)
    assert r.state.value == "failed"
    by_task: dict[str, list[dict[str, object]]] = {}
    for a in helper.attempts(r.run_id):
        by_task.setdefault(str(a["task"]), []).append(a)
    assert [a["state"] for a in by_task["flaky"]] == ["failed", "failed", "succeeded"]
    assert [a["number"] for a in by_task["flaky"]] == [1, 2, 3]
    assert [a["state"] for a in by_task["always_fails"]] == ["failed", "failed"]
    assert helper.states(r.run_id) == {"flaky": "succeeded", "always_fails": "failed"}


@task(resources=Resources(memory="300M"))
def hog() -> int:
    import time

    block = bytearray(600 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return len(block)


def test_local_executor_enforces_memory_request(helper: Helper) -> None:
    @pipeline
    def hungry() -> int:
        return hog()

    r = helper.run(hungry)
    assert r.state.value == "failed"
    (attempt,) = helper.attempts(r.run_id)
    assert attempt["state"] == "out_of_memory"
    assert "over its memory request of 300 MiB" in attempt["error"]
    assert attempt["ended_at"] - attempt["submitted_at"] < 4.5


def test_walltime_is_enforced_for_python_and_shell_tasks(helper: Helper) -> None:
    pipe = helper.load('''
        import time
        from corral import task, pipeline, shell, Resources
        @task(resources=Resources(walltime=1))
        def sleepy() -> int:
            time.sleep(30)
            return 1
        @pipeline
        def limited():
            s = shell("sleep 30 & echo $! > child.pid; wait", outputs="never.txt",
                      resources=Resources(walltime="1s"), name="sleepy_shell")
            return sleepy(), s
    ''')
    r = helper.run(pipe)
    assert r.state.value == "failed"
    rows = {a["task"]: a for a in helper.attempts(r.run_id)}
    for name in ("sleepy", "sleepy_shell"):
        assert rows[name]["state"] == "timeout", rows[name]
        assert "walltime of 1 s" in rows[name]["error"]
        assert rows[name]["ended_at"] - rows[name]["submitted_at"] < 10
    # the whole process group of the shell task was killed, not just bash
    import os

    child = int((helper.workdir / "child.pid").read_text())
    try:
        os.kill(child, 0)
    except ProcessLookupError:
        pass
    else:
        with open(f"/proc/{child}/stat") as fh:
            assert fh.read().rsplit(")", 1)[1].split()[0] == "Z", "sleep 30 survived"


THREADS_PIPE = '''
    import os
    import numpy
    from threadpoolctl import threadpool_info
    from corral import Resources, pipeline, shell, task

    @task(resources=Resources(cores=NCORES), cache=False)
    def threads(tag: int) -> dict:
        numpy.ones(tag)  # numpy (and its OpenBLAS) is loaded in the worker by now, either way
        blas = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"]
        return {"blas": blas, "env": {k: os.environ.get(k) for k in
                ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CORRAL_CORES")}}

    @pipeline
    def p() -> list:
        return threads.map(tag=[1, 2])
'''


@pytest.mark.parametrize("cores", [1, 2])
def test_numeric_thread_pools_follow_the_cores_requested(helper: Helper, cores: int) -> None:
    """A task asking for N cores sees OMP/OpenBLAS/MKL thread counts of N in its environment,
    and the OpenBLAS that numpy loaded in the worker before the task is limited to N too."""
    pipe = helper.load(THREADS_PIPE.replace("NCORES", str(cores)), "p")
    values = helper.run(pipe).value
    for v in values:
        assert v["env"] == dict.fromkeys(
            ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "CORRAL_CORES"),
            str(cores))
        assert v["blas"] and set(v["blas"]) == {cores}


def test_attempt_environment_limits_already_loaded_blas() -> None:
    """In a shared worker, numpy may have loaded OpenBLAS (with one thread per CPU) before the
    attempt: the limit is applied at run time for the attempt and undone after it."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info

    from corral.engine.specs import attempt_env
    from corral.worker.execute import thread_limits

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["internal_api"] == "openblas"}

    before = blas()
    assert before, "numpy without OpenBLAS: nothing to check"
    with thread_limits(attempt_env(1, Resources(cores=1))["CORRAL_CORES"]):
        assert blas() == {1}
    assert blas() == before


def test_shell_tasks_get_thread_variables(helper: Helper) -> None:
    pipe = helper.load('''
        from corral import Resources, pipeline, shell

        @pipeline
        def p():
            return shell("echo $OMP_NUM_THREADS $OPENBLAS_NUM_THREADS > {output}",
                         outputs={"output": "threads.txt"}, resources=Resources(cores=3))
    ''', "p")
    helper.run(pipe)
    assert (helper.workdir / "threads.txt").read_text().split() == ["3", "3"]


def test_python_tasks_see_the_environment_of_their_run(
    helper: Helper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fork server outlives a run; a variable set before a later run still reaches tasks."""
    source = '''
        import os
        from corral import pipeline, task

        @task(cache=False)
        def read(name: str) -> str | None:
            return os.environ.get(name)

        @pipeline
        def p() -> str | None:
            return read("CORRAL_TEST_LATE_VARIABLE")
    '''
    pipe = helper.load(source, "p")
    monkeypatch.delenv("CORRAL_TEST_LATE_VARIABLE", raising=False)
    assert helper.run(pipe).value is None
    monkeypatch.setenv("CORRAL_TEST_LATE_VARIABLE", "set later")
    assert helper.run(pipe).value == "set later"


CORES_PIPE = '''
import time
from corral import Resources, pipeline, shell, task

@task(resources=Resources(cores=NCORES))
def busy(i: int) -> float:
    time.sleep(0.4)
    return time.time()

@pipeline
def p() -> tuple:
    return busy.map(i=[1, 2]), shell("sleep 0.4", name="sh", resources=Resources(cores=NCORES))
'''


def _overlaps(spans: list[tuple[float, float]]) -> bool:
    spans = sorted(spans)
    return any(b[0] < a[1] - 0.05 for a, b in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize(("cores", "overlap"), [(1, True), (2, False), (64, False)])
def test_local_executor_counts_cores_against_jobs(helper: Helper, cores: int,
                                                  overlap: bool) -> None:
    """With -j 2, 1-core tasks run two at a time; 2-core tasks (Python or shell) one at a time;
    a task asking for more cores than -j still runs, alone."""
    pipe = helper.load(CORES_PIPE.replace("NCORES", str(cores)), "p")
    r = helper.run(pipe, jobs=2)
    assert r.ok, r.errors
    spans = [(a["started_at"], a["ended_at"]) for a in helper.attempts(r.run_id)]
    assert len(spans) == 3
    assert _overlaps(spans) is overlap, spans
