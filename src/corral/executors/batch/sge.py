"""Grid Engine (SGE, Son of Grid Engine, OGS): ``qsub`` directives, ``qstat -xml``, ``qacct``.

Live jobs come from one ``qstat -xml`` call; jobs that left ``qstat`` are looked up with one
``qacct -j 'corral-<run>-*'`` call (the run tag is a job-name pattern), which says how they ended:
``failed 37`` with an ``h_rt`` request is a timeout, ``failed 100`` with exit 137 a ``qdel``.
A job in ``Eqw`` never runs; it is deleted and reported failed.

Grid Engine re-queues a job script that exits 99 and holds one that exits 100 in ``Eqw``; the job
script (``templates/sge.sh.j2``) turns a worker exiting 99 or 100 into exit 1, writing an exit
marker with the real status if the worker left none, so such a task fails once, at once.
"""

from __future__ import annotations

import math
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from corral.errors import CommandError, ExecutorError, ResourceError
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.script import JobRequest, directive_value, run_tag
from corral.executors.batch.settings import BatchSettings
from corral.executors.batch.status import JobState, JobStatus, expand_range, parse_size


@dataclass
class SGESettings(BatchSettings):
    """Profile options of the Grid Engine executor."""

    queue: str | None = None
    project: str | None = None
    pe: str = "smp"
    """Parallel environment for multi-core tasks (``-pe <pe> <cores>``)."""
    mpi_pe: str = "mpi"
    """Parallel environment for parallel (MPI) tasks: ``-pe <mpi_pe> <ranks x cores_per_task>``;
    its ``allocation_rule`` decides how the slots spread over hosts."""
    memory_resource: str = "h_vmem"
    """Complex that limits memory, requested per slot (``h_vmem``, ``mem_free``, ``h_rss``)."""
    gpu_resource: str | None = None
    """Consumable complex for GPUs (e.g. ``gpu``); GPU requests are refused without it."""


# ---------------------------------------------------------------------- building
def qsub_directives(req: JobRequest, settings: SGESettings) -> list[str]:
    """``#$`` lines for one job or array; unsupported requests raise ResourceError."""
    r = req.resources
    for field, value in (("nodes", r.nodes > 1 and not r.parallel), ("exclusive", r.exclusive),
                         ("constraint", r.constraint), ("qos", r.qos)):
        if value:
            raise ResourceError(
                f"Grid Engine cannot express {field}={getattr(r, field)!r} in Corral's job "
                "template; remove it or pass qsub options through native={'sge': [...]}"
            )
    opts = [f"-N {req.name}", "-S /bin/bash", f"-o {req.stdout}", f"-e {req.stderr}"]
    queue, project = r.queue or settings.queue, r.account or settings.project
    if queue:
        opts.append(f"-q {directive_value('queue', queue)}")
    if project:
        opts.append(f"-P {directive_value('account', project)}")
    slots, node_slots = r.cores, r.cores
    if r.parallel:  # ranks x cores slots in the MPI environment, spread as it allocates them
        slots, node_slots = r.total_cores, r.ranks_per_node * r.rank_cores
        opts.append(f"-pe {directive_value('mpi_pe', settings.mpi_pe)} {slots}")
    elif r.cores > 1:
        opts.append(f"-pe {directive_value('pe', settings.pe)} {r.cores}")
    if r.memory_bytes:
        per_slot = math.ceil(r.memory_bytes / node_slots / 1024**2)
        opts.append(f"-l {directive_value('memory_resource', settings.memory_resource)}"
                    f"={per_slot}M")
    if r.walltime_seconds:
        opts.append(f"-l h_rt={r.walltime_seconds}")
    if r.gpus:
        if not settings.gpu_resource:
            raise ResourceError(
                f"gpus={r.gpus} needs the name of the cluster's GPU complex; "
                "set gpu_resource (e.g. 'gpu') in the sge profile"
            )
        opts.append(f"-l {directive_value('gpu_resource', settings.gpu_resource)}={r.gpus}")
    if req.array_size:
        opts += [f"-t 1-{req.array_size}", f"-tc {req.throttle or req.array_size}"]
    opts += list(req.extra_args)
    return [f"#$ {o}" for o in opts]


def qsub_argv(script: str, depends_on: Sequence[str] = (),
              elementwise: Sequence[str] = ()) -> list[str]:
    """``qsub -terse``; with dependencies ``-hold_jid`` (held until the others have ended) and,
    for an array whose task i waits for task i of ``elementwise``, ``-hold_jid_ad``."""
    argv = ["qsub", "-terse"]
    if depends_on:
        argv += ["-hold_jid", ",".join(depends_on)]
    if elementwise:
        argv += ["-hold_jid_ad", ",".join(elementwise)]
    return [*argv, script]


def parse_qsub(stdout: str) -> str:
    """The job id from ``qsub -terse`` (``ID`` or ``ID.1-10:1`` for arrays)."""
    for line in stdout.splitlines():
        job_id = line.strip().split(".")[0]
        if job_id.isdigit():
            return job_id
    raise ExecutorError(f"cannot find a job id in the qsub output {stdout.strip()!r}")


def qstat_argv() -> list[str]:
    return ["qstat", "-xml"]


def qacct_argv(pattern: str) -> list[str]:
    return ["qacct", "-j", pattern]


def qdel_argv(native_ids: Sequence[str]) -> list[str]:
    return ["qdel", *native_ids]


# ---------------------------------------------------------------------- parsing
def _state(code: str) -> JobState:
    if "E" in code:
        return JobState.ERROR_HELD
    if "q" in code or "h" in code or "w" in code:
        return JobState.PENDING
    return JobState.RUNNING


def parse_qstat_xml(text: str) -> dict[str, JobStatus]:
    """Parse ``qstat -xml``: one ``job_list`` per job, running array task or pending range."""
    out: dict[str, JobStatus] = {}
    if not text.strip():
        return out
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ExecutorError(f"cannot parse qstat -xml output: {exc}") from exc
    for job in root.iter("job_list"):
        number = (job.findtext("JB_job_number") or "").strip()
        if not number:
            continue
        code = (job.findtext("state") or "").strip()
        status_reason = f"Grid Engine state {code}" if "E" in code else None
        tasks = (job.findtext("tasks") or "").strip()
        keys = [f"{number}.{i}" for i in expand_range(tasks)] if tasks else [number]
        for key in keys:
            out[key] = JobStatus(_state(code), reason=status_reason)
    return out


def _sge_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.strip(), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


def _first_int(text: str) -> int | None:
    word = text.split()[0] if text.split() else ""
    return int(word) if word.lstrip("-").isdigit() else None


def _h_rt(category: str) -> int | None:
    for part in category.replace(",", " ").split():
        if part.startswith("h_rt="):
            value = part[5:]
            return _first_int(value) if value.isdigit() else None
    return None


def _classify(rec: dict[str, str]) -> tuple[JobState, str | None]:
    failed = _first_int(rec.get("failed", "0")) or 0
    exit_status = _first_int(rec.get("exit_status", "0")) or 0
    reason = rec.get("failed", "").partition(":")[2].strip() or None
    if failed == 0:
        return (JobState.COMPLETED if exit_status == 0 else JobState.FAILED), None
    if failed == 37:
        limit = _h_rt(rec.get("category", ""))
        wall = _first_int(rec.get("ru_wallclock", "0").rstrip("s")) or 0
        if limit is not None and wall >= limit - 1:
            return JobState.TIMEOUT, reason
        return JobState.OUT_OF_MEMORY, reason
    if failed == 100 and exit_status in (137, 143):
        return JobState.CANCELLED, "killed (qdel or a signal): " + (reason or "")
    return JobState.FAILED, f"Grid Engine failure code {failed}" + (f": {reason}" if reason else "")


def parse_qacct(text: str) -> dict[str, JobStatus]:
    """Parse ``qacct -j`` records (separated by ``====`` lines); later records win."""
    out: dict[str, JobStatus] = {}
    for block in text.split("=" * 20):
        rec: dict[str, str] = {}
        for line in block.strip().splitlines():
            key, _, value = line.partition(" ")
            rec[key.strip()] = value.strip()
        number = rec.get("jobnumber", "")
        if not number.isdigit():
            continue
        task = rec.get("taskid", "undefined")
        key = f"{number}.{task}" if task.isdigit() else number
        state, reason = _classify(rec)
        out[key] = JobStatus(
            state,
            exit_code=_first_int(rec.get("exit_status", "")),
            reason=reason,
            submitted=_sge_time(rec.get("qsub_time", "")),
            started=_sge_time(rec.get("start_time", "")),
            ended=_sge_time(rec.get("end_time", "")),
            max_rss=parse_size(rec.get("maxvmem")),
            host=rec.get("hostname") or None,
        )
    return out


# ---------------------------------------------------------------------- executor
class SGEExecutor(BatchExecutor):
    """Runs attempts as Grid Engine jobs (task arrays for scatters)."""

    kind: ClassVar[str] = "sge"
    settings_class: ClassVar[type[BatchSettings]] = SGESettings
    name_limit: ClassVar[int] = 200
    array_token: ClassVar[str] = "$TASK_ID"
    dependency_on_end: ClassVar[bool] = True
    detached_arrays: ClassVar[bool] = True
    elementwise_dependency: ClassVar[bool] = True
    settings: SGESettings

    def directives(self, req: JobRequest) -> list[str]:
        return qsub_directives(req, self.settings)

    def submit_argv(self, script: str, depends_on: Sequence[str] = (),
                    elementwise: Sequence[str] = ()) -> list[str]:
        return qsub_argv(script, depends_on, elementwise)

    def parse_submit(self, stdout: str) -> str:
        return parse_qsub(stdout)

    def element_id(self, job_id: str, index: int) -> str:
        return f"{job_id}.{index}"

    def job_of(self, native_id: str) -> str:
        return native_id.split(".")[0]

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return qdel_argv(native_ids)

    def query(self, native_ids: Sequence[str]) -> dict[str, JobStatus]:
        jobs = {self.job_of(n) for n in native_ids}
        live = parse_qstat_xml(self._run(qstat_argv()).stdout)
        statuses = {k: v for k, v in live.items() if self.job_of(k) in jobs}
        if all(n in statuses for n in native_ids):
            return statuses
        result = self._run(qacct_argv(f"{run_tag(self.ctx.run_id)}-*"), check=False)
        if result.returncode != 0 and "not found" not in result.stderr:
            raise CommandError(result.argv, result.returncode, result.stdout, result.stderr)
        for key, status in parse_qacct(result.stdout).items():
            if key not in statuses and self.job_of(key) in jobs:
                statuses[key] = status
        return statuses


__all__ = [
    "SGEExecutor",
    "SGESettings",
    "parse_qacct",
    "parse_qstat_xml",
    "parse_qsub",
    "qacct_argv",
    "qdel_argv",
    "qstat_argv",
    "qsub_argv",
    "qsub_directives",
]
