"""Rendered job scripts: golden files, quoting/injection, settings and resource validation.

Regenerate the golden files with ``CORRAL_REGEN_GOLDEN=1 pytest tests/batch/test_scripts.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from corral.errors import ConfigError, ResourceError
from corral.executors import create_executor
from corral.executors.base import ExecutorContext, TaskKind, TaskSpec
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.lsf import bsub_argv, parse_bsub
from corral.executors.batch.pbs import parse_qsub as parse_pbs_qsub
from corral.executors.batch.pbs import qsub_argv as pbs_qsub_argv
from corral.executors.batch.script import job_name
from corral.executors.batch.sge import parse_qsub as parse_sge_qsub
from corral.executors.batch.sge import qsub_argv as sge_qsub_argv
from corral.executors.batch.slurm import parse_sbatch, sbatch_argv
from corral.resources import Resources

GOLDEN = Path(__file__).parent / "golden"
KINDS = ["slurm", "sge", "pbs", "lsf"]
CTX = ExecutorContext(
    run_id="r20240101", work_root=Path("/proj/.corral/work/r20240101"), cwd=Path("/proj"),
    max_parallel=8, python="/opt/venv/bin/python",
)
BIG = Resources(
    cores=4, memory="8G", walltime="1:30:00", queue="long", account="phys123",
)
OPTIONS: dict[str, dict[str, Any]] = {
    "slurm": {"qos": "normal", "partition": "default"},
    "sge": {"pe": "smp", "project": "default"},
    "pbs": {"queue": "workq"},
    "lsf": {"project": "default"},
}
COMMON = {
    "modules": ["python/3.11"],
    "setup": ["source /opt/venv/bin/activate"],
    "env": {"OMP_NUM_THREADS": "4", "GREETING": "hello world; $(rm -rf /)"},
    "array_throttle": 2,
}


def make(kind: str, **options: Any) -> BatchExecutor:
    ex = create_executor(kind, {**OPTIONS[kind], **COMMON, **options}, CTX)
    assert isinstance(ex, BatchExecutor)
    return ex


def spec(i: int, *, name: str = "", group: str = "solve", res: Resources = BIG) -> TaskSpec:
    return TaskSpec(
        attempt_id=f"r20240101.{i}.1", run_id="r20240101", task_key="ab" * 8,
        name=name or f"solve[{i}]", group=group, kind=TaskKind.PYTHON, payload=b"",
        resources=res, attempt=1, workdir=CTX.work_root / f"{i:04d}" / "1", cwd=CTX.cwd,
    )


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CORRAL_REGEN_GOLDEN") == "1" or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; CORRAL_REGEN_GOLDEN=1 to accept"


@pytest.mark.parametrize("kind", KINDS)
def test_golden_single(kind: str) -> None:
    check_golden(f"{kind}-single.sh", make(kind).render_job([spec(1)]).script)


@pytest.mark.parametrize("kind", KINDS)
def test_golden_array(kind: str) -> None:
    job = make(kind).render_job([spec(i) for i in range(1, 6)])
    check_golden(f"{kind}-array.sh", job.script)
    assert job.list_text is not None and len(job.list_text.splitlines()) == 5
    assert job.array_err is not None


@pytest.mark.parametrize("kind", KINDS)
def test_golden_container(kind: str) -> None:
    ex = make(kind, container="/images/corral.sif", modules=[], setup=[])
    check_golden(f"{kind}-container.sh", ex.render_job([spec(1, res=Resources())]).script)


@pytest.mark.parametrize(("worker_exit", "job_exit", "marker"), [
    (0, 0, None), (3, 3, None), (99, 1, "written"), (100, 1, "written"), (100, 1, "the worker's"),
])
def test_sge_script_maps_exit_99_and_100(tmp_path: Path, worker_exit: int, job_exit: int,
                                         marker: str | None) -> None:
    """Run the SGE script with a stand-in worker: its 99 (re-queue) and 100 (error state) end
    the job with 1, and leave an exit marker with the real code when the worker wrote none."""
    import json
    import subprocess

    worker = tmp_path / "worker"
    setup = 'echo \'{"outcome": "failed"}\' > exit.json; ' if marker == "the worker's" else ""
    worker.write_text(f"#!/bin/sh\ncd {tmp_path}/attempt && {setup}exit {worker_exit}\n")
    worker.chmod(0o755)
    (tmp_path / "attempt").mkdir()
    ctx = ExecutorContext(run_id="r1", work_root=tmp_path, cwd=tmp_path, max_parallel=1,
                          python=str(worker))
    ex = create_executor("sge", {}, ctx)
    assert isinstance(ex, BatchExecutor)
    one = TaskSpec(attempt_id="r1.1.1", run_id="r1", task_key="ab", name="t", group="t",
                   kind=TaskKind.PYTHON, payload=b"", resources=Resources(), attempt=1,
                   workdir=tmp_path / "attempt", cwd=tmp_path)
    script = tmp_path / "job.sh"
    script.write_text(ex.render_job([one]).script)
    proc = subprocess.run(["bash", str(script)], check=False)  # noqa: S603
    assert proc.returncode == job_exit
    written = tmp_path / "attempt" / "exit.json"
    if marker is None:
        assert not written.exists()
    elif marker == "written":
        data = json.loads(written.read_text())
        assert data["outcome"] == "failed" and data["metrics"]["exit_code"] == worker_exit
        assert f"exited with status {worker_exit}" in data["error"]
        log = (tmp_path / "attempt" / "stderr.log").read_text()
        assert f"the worker exited with status {worker_exit}; the job exits 1 instead" in log
    else:
        assert json.loads(written.read_text()) == {"outcome": "failed"}  # never overwritten


EVIL = [
    "x\n#SBATCH --wrap=evil",
    "a; rm -rf /",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "name with spaces",
    "q#SBATCH",
]


def directive_lines(script: str) -> list[str]:
    return [line for line in script.splitlines() if re.match(r"^#(SBATCH|\$|PBS|BSUB) ", line)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("evil", EVIL)
def test_task_name_cannot_inject(kind: str, evil: str) -> None:
    script = make(kind).render_job([spec(1, name=evil, group=evil)]).script
    clean = make(kind).render_job([spec(1, name="plain", group="plain")]).script
    assert len(script.splitlines()) == len(clean.splitlines())
    assert len(directive_lines(script)) == len(directive_lines(clean))
    for bad in ("$(", "`", ";", "\n#SBATCH --wrap"):
        assert all(bad not in line for line in directive_lines(script))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("field", ["queue", "account"])
@pytest.mark.parametrize("evil", EVIL[1:])
def test_queue_and_account_are_validated(kind: str, field: str, evil: str) -> None:
    ex = make(kind)
    bad: dict[str, Any] = {field: evil}  # queue=evil or account=evil
    with pytest.raises(ResourceError, match=field):
        ex.validate(Resources(**bad))
    with pytest.raises(ResourceError):
        ex.render_job([spec(1, res=Resources(**bad))])


def test_newline_in_resources_is_refused_by_resources_itself() -> None:
    with pytest.raises(ResourceError):
        Resources(queue="x\n#SBATCH --wrap=evil")


@pytest.mark.parametrize("kind", KINDS)
def test_env_values_are_quoted(kind: str) -> None:
    script = make(kind).render_job([spec(1)]).script
    assert "export GREETING='hello world; $(rm -rf /)'" in script


@pytest.mark.parametrize("kind", KINDS)
def test_native_args_are_directives_and_checked(kind: str) -> None:
    ex = make(kind)
    res = Resources(native={kind: ["--reservation=big"]})
    script = ex.render_job([spec(1, res=res)]).script
    assert any(line.endswith("--reservation=big") for line in directive_lines(script))
    with pytest.raises(ResourceError, match="native"):
        ex.validate(Resources(native={kind: ["--x=1; touch /tmp/pwned"]}))
    with pytest.raises(ResourceError):
        ex.validate(Resources(native={kind: ["--x=$(id)"]}))


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_option_names_valid_ones(kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        create_executor(kind, {"partitoin": "x"}, CTX)
    message = str(info.value)
    assert "partitoin" in message and "array_throttle" in message and "\n" not in message


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("slurm", {"accounting": "maybe"}),
        ("slurm", {"max_jobs": "10"}),
        ("sge", {"array_throttle": 0}),
        ("pbs", {"env": {"BAD NAME": "x"}}),
        ("lsf", {"container_runtime": "podman"}),
        ("lsf", {"setup": ["echo a\necho b"]}),
    ],
)
def test_bad_option_values(kind: str, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        create_executor(kind, options, CTX)


@pytest.mark.parametrize(
    ("kind", "res", "needle"),
    [
        ("sge", Resources(gpus=1), "gpu_resource"),
        ("sge", Resources(nodes=2), "nodes"),
        ("sge", Resources(exclusive=True), "exclusive"),
        ("pbs", Resources(qos="high"), "qos"),
        ("lsf", Resources(qos="high"), "qos"),
    ],
)
def test_unsupported_resources(kind: str, res: Resources, needle: str) -> None:
    with pytest.raises(ResourceError, match=needle):
        make(kind).validate(res)


def test_sge_gpus_with_configured_resource() -> None:
    script = make("sge", gpu_resource="gpu").render_job([spec(1, res=Resources(gpus=2))]).script
    assert "#$ -l gpu=2" in script


def test_sge_memory_is_per_slot() -> None:
    script = make("sge").render_job([spec(1)]).script
    assert "#$ -l h_vmem=2048M" in script and "#$ -pe smp 4" in script


def test_job_names_are_tagged_sanitised_and_truncated() -> None:
    assert job_name("r1", "roots[3]") == "corral-r1-roots_3"
    long = job_name("run-42", "x" * 500, limit=40)
    assert long.startswith("corral-run-42-") and len(long) == 40
    assert job_name("r1", "\n;$()") == "corral-r1-task"


def test_submit_argv_with_dependencies_and_parsing() -> None:
    assert sbatch_argv("/s.sh", ["11", "12"]) == [
        "sbatch", "--parsable", "--dependency=afterok:11:12", "--kill-on-invalid-dep=yes", "/s.sh"
    ]
    assert sge_qsub_argv("/s.sh", ["11"]) == ["qsub", "-terse", "-hold_jid", "11", "/s.sh"]
    # an array whose element i waits for element i of array 13 (a map over a map)
    assert sbatch_argv("/s.sh", ["11"], ["13"]) == [
        "sbatch", "--parsable", "--dependency=afterok:11,aftercorr:13",
        "--kill-on-invalid-dep=yes", "/s.sh"]
    assert sbatch_argv("/s.sh", [], ["13"])[2] == "--dependency=aftercorr:13"
    assert sge_qsub_argv("/s.sh", ["11"], ["13"]) == [
        "qsub", "-terse", "-hold_jid", "11", "-hold_jid_ad", "13", "/s.sh"]
    assert pbs_qsub_argv("/s.sh", ["11.srv"]) == ["qsub", "-W", "depend=afterok:11.srv", "/s.sh"]
    # detached mode waits for a whole PBS array by its id, as qsub printed it
    assert pbs_qsub_argv("/s.sh", ["12[].srv"])[2] == "depend=afterok:12[].srv"
    assert bsub_argv("/s.sh", ["11", "12"]) == ["bsub", "-w", "done(11) && done(12)"]
    assert parse_sbatch("4242\n") == "4242"
    assert parse_sbatch("4242;cluster2\n") == "4242"
    assert parse_sge_qsub("77.1-10:1\n") == "77"
    assert parse_pbs_qsub("123[].pbs01\n") == "123[].pbs01"
    assert parse_bsub("Job <9001> is submitted to queue <normal>.\n") == "9001"


def test_describe_hides_env_values() -> None:
    described = make("slurm").describe()
    assert described["kind"] == "slurm"
    assert "$(rm -rf /)" not in repr(described)


@pytest.mark.parametrize("kind", ["slurm", "pbs", "lsf"])
def test_golden_multinode(kind: str) -> None:
    res = Resources(
        cores=8, nodes=2, memory="16G", walltime="2d", gpus=2, constraint="skylake",
        exclusive=True, native={kind: ["--comment=hello"] if kind == "slurm" else ["-r n"]},
    )
    check_golden(f"{kind}-multinode.sh", make(kind).render_job([spec(1, res=res)]).script)
