"""SLURM: ``sbatch`` directives, submit/cancel argv, and parsing of ``sacct``/``squeue`` output.

Status comes from ``sacct`` (one call for every job of the run; ``-j`` with job ids includes all
array elements) when accounting exists, with ``squeue -t all`` for jobs ``sacct`` does not list
yet. With ``accounting = "none"``, or when ``sacct`` fails or says accounting is disabled
(``"auto"``), only ``squeue`` is used: finished jobs are visible there for ``MinJobAge`` seconds.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from corral.errors import CommandError, ConfigError, ExecutorError
from corral.executors.base import ExecutorContext
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.script import JobRequest, directive_value
from corral.executors.batch.settings import BatchSettings
from corral.executors.batch.status import JobState, JobStatus, expand_range, parse_size
from corral.transport.base import Transport

log = logging.getLogger(__name__)

ACCOUNTING_MODES = ("auto", "sacct", "none")
SACCT_FIELDS = "JobID,JobName,State,ExitCode,Submit,Start,End,MaxRSS,NodeList,Reason"
SQUEUE_FORMAT = "%i|%j|%T|%r"

STATES: dict[str, JobState] = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING, "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING, "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING, "SUSPENDED": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "SIGNALING": JobState.RUNNING, "RESIZING": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "SPECIAL_EXIT": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "TIMEOUT": JobState.TIMEOUT, "DEADLINE": JobState.TIMEOUT,
    "NODE_FAIL": JobState.NODE_FAILURE, "BOOT_FAIL": JobState.NODE_FAILURE,
    "PREEMPTED": JobState.PREEMPTED,
    "CANCELLED": JobState.CANCELLED, "REVOKED": JobState.CANCELLED,
}


@dataclass
class SlurmSettings(BatchSettings):
    """Profile options of the SLURM executor."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    accounting: str = "auto"
    """``auto`` (sacct, falling back to squeue), ``sacct`` or ``none`` (squeue only)."""

    def check(self) -> None:
        super().check()
        if self.accounting not in ACCOUNTING_MODES:
            raise ConfigError(
                f"accounting={self.accounting!r} is not one of {', '.join(ACCOUNTING_MODES)}"
            )


# ---------------------------------------------------------------------- building
def sbatch_directives(req: JobRequest, settings: SlurmSettings) -> list[str]:
    """``#SBATCH`` lines for one job or array; every value is validated."""
    r = req.resources
    opts = [f"--job-name={req.name}", f"--output={req.stdout}", f"--error={req.stderr}"]
    for flag, value, what in (
        ("--partition", r.queue or settings.partition, "queue"),
        ("--account", r.account or settings.account, "account"),
        ("--qos", r.qos or settings.qos, "qos"),
        ("--constraint", r.constraint, "constraint"),
    ):
        if value:
            opts.append(f"{flag}={directive_value(what, value)}")
    if r.parallel:
        opts += [f"--nodes={r.nodes}", f"--ntasks={r.ranks}"]
        if r.tasks_per_node is not None:
            opts.append(f"--ntasks-per-node={r.tasks_per_node}")
    elif r.nodes > 1:
        opts += [f"--nodes={r.nodes}", "--ntasks-per-node=1"]
    else:
        opts += ["--nodes=1", "--ntasks=1"]
    opts.append(f"--cpus-per-task={r.rank_cores}")
    if r.memory_bytes:
        opts.append(f"--mem={math.ceil(r.memory_bytes / 1024**2)}M")
    if r.walltime_seconds:
        opts.append(f"--time={slurm_time(r.walltime_seconds)}")
    if r.gpus:
        opts.append(f"--gres=gpu:{r.gpus}")
    if r.exclusive:
        opts.append("--exclusive")
    if req.array_size:
        opts.append(f"--array=1-{req.array_size}%{req.throttle or req.array_size}")
    opts += list(req.extra_args)
    return [f"#SBATCH {o}" for o in opts]


SACCT_LAG = 10.0
"""Seconds a new job may be missing from sacct before squeue is asked about it."""


def slurm_time(seconds: int) -> str:
    """``D-HH:MM:SS`` (SLURM rounds limits up to whole minutes)."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def sbatch_argv(script: str, depends_on: Sequence[str] = (),
                elementwise: Sequence[str] = ()) -> list[str]:
    """``sbatch --parsable``; with dependencies, ``afterok`` (and ``aftercorr`` for an array
    whose element i waits for element i of ``elementwise``) and ``--kill-on-invalid-dep=yes``."""
    argv = ["sbatch", "--parsable"]
    deps = [f"afterok:{':'.join(depends_on)}"] if depends_on else []
    deps += [f"aftercorr:{':'.join(elementwise)}"] if elementwise else []
    if deps:
        argv += [f"--dependency={','.join(deps)}", "--kill-on-invalid-dep=yes"]
    return [*argv, script]


def parse_sbatch(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` output (``ID`` or ``ID;cluster``)."""
    for line in stdout.splitlines():
        job_id = line.strip().split(";")[0]
        if job_id.isdigit():
            return job_id
    raise ExecutorError(f"cannot find a job id in the sbatch output {stdout.strip()!r}")


def sacct_argv(job_ids: Sequence[str]) -> list[str]:
    return ["sacct", "-n", "-P", f"--jobs={','.join(job_ids)}", f"--format={SACCT_FIELDS}"]


def squeue_argv(job_ids: Sequence[str]) -> list[str]:
    return ["squeue", "-h", "-r", "-t", "all", f"--jobs={','.join(job_ids)}",
            "-o", SQUEUE_FORMAT]


def scancel_argv(native_ids: Sequence[str]) -> list[str]:
    return ["scancel", *native_ids]


# ---------------------------------------------------------------------- parsing
def _time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _exit_code(text: str) -> int | None:
    code, _, signal = text.partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal) and not int(code):
        return 128 + int(signal)
    return int(code)


def _element_ids(job_id: str) -> list[str]:
    """``"4_[2-5%2]"`` -> ``["4_2", ..., "4_5"]``; other ids unchanged."""
    m = re.match(r"^(\d+)_\[(.+)\]$", job_id)
    if not m:
        return [job_id]
    return [f"{m.group(1)}_{i}" for i in expand_range(m.group(2))]


def parse_sacct(stdout: str) -> dict[str, JobStatus]:
    """Parse ``sacct -n -P --format=SACCT_FIELDS``: allocation rows give the state, steps RSS."""
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        cols = line.split("|")
        if len(cols) < 10:
            continue
        jid, _name, state, exit_code, submit, start, end, rss, node, reason = cols[:10]
        base, _, step = jid.partition(".")
        word = state.split()[0] if state.strip() else ""
        if step:
            status = out.get(base)
            if status is not None:
                size = parse_size(rss, "K")
                if size is not None:
                    status.max_rss = max(status.max_rss or 0, size)
                if STATES.get(word) is JobState.OUT_OF_MEMORY:
                    status.state = JobState.OUT_OF_MEMORY
            continue
        for eid in _element_ids(base):
            out[eid] = JobStatus(
                STATES.get(word, JobState.RUNNING),
                exit_code=_exit_code(exit_code),
                reason=_reason(state, reason),
                submitted=_time(submit),
                started=_time(start),
                ended=_time(end),
                host=node if node and node != "None assigned" else None,
            )
    return out


def _reason(state: str, reason: str) -> str | None:
    if state.startswith("CANCELLED by"):
        return state.lower()
    return reason if reason and reason not in ("None", "NonZeroExitCode") else None


def parse_squeue(stdout: str) -> dict[str, JobStatus]:
    """Parse ``squeue -h -r -t all -o SQUEUE_FORMAT``."""
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        cols = line.strip().split("|")
        if len(cols) < 4:
            continue
        jid, _name, state, reason = cols[:4]
        for eid in _element_ids(jid):
            out[eid] = JobStatus(
                STATES.get(state, JobState.RUNNING),
                reason=reason if reason not in ("None", "NonZeroExitCode") else None,
            )
    return out


def accounting_disabled(text: str) -> bool:
    low = text.lower()
    return "accounting storage is disabled" in low


# ---------------------------------------------------------------------- executor
class SlurmExecutor(BatchExecutor):
    """Runs attempts as SLURM jobs (arrays for scatters)."""

    kind: ClassVar[str] = "slurm"
    settings_class: ClassVar[type[BatchSettings]] = SlurmSettings
    name_limit: ClassVar[int] = 200
    array_token: ClassVar[str] = "%a"
    detached_arrays: ClassVar[bool] = True
    elementwise_dependency: ClassVar[bool] = True
    settings: SlurmSettings

    def __init__(self, settings: BatchSettings, ctx: ExecutorContext,
                 transport: Transport | None = None) -> None:
        super().__init__(settings, ctx, transport)
        self._use_sacct: bool | None = None
        """Whether sacct answers (None: not asked yet; the first status query tells)."""
        self._submitted_at: dict[str, float] = {}
        """Jobs this executor submitted: sacct may not list them for a moment."""

    def directives(self, req: JobRequest) -> list[str]:
        return sbatch_directives(req, self.settings)

    def submit_argv(self, script: str, depends_on: Sequence[str] = (),
                    elementwise: Sequence[str] = ()) -> list[str]:
        return sbatch_argv(script, depends_on, elementwise)

    def parse_submit(self, stdout: str) -> str:
        job_id = parse_sbatch(stdout)
        self._submitted_at[job_id] = time.monotonic()
        return job_id

    def element_id(self, job_id: str, index: int) -> str:
        return f"{job_id}_{index}"

    def job_of(self, native_id: str) -> str:
        return native_id.split("_")[0]

    def dependency_id(self, native_id: str) -> str:
        return native_id  # afterok:123_4 waits for element 4 of array 123 alone

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return scancel_argv(native_ids)

    def query(self, native_ids: Sequence[str]) -> dict[str, JobStatus]:
        """One sacct call for every job of the run; squeue only for jobs sacct does not list,
        except jobs submitted here less than ``SACCT_LAG`` ago (sacct records appear a moment
        after submission), or for every job when accounting is off. No separate probe: the
        first sacct call tells whether accounting works."""
        job_ids = sorted({self.job_of(n) for n in native_ids})
        statuses: dict[str, JobStatus] = {}
        now = time.monotonic()
        sacct_answered = False
        if self._use_sacct is not False and self.settings.accounting != "none":
            result = self._run(sacct_argv(job_ids), check=False)
            disabled = accounting_disabled(result.stderr + result.stdout)
            if result.returncode == 0 and not disabled:
                statuses = parse_sacct(result.stdout)
                self._use_sacct = sacct_answered = True
            elif self.settings.accounting == "sacct":
                raise CommandError(result.argv, result.returncode, result.stdout, result.stderr)
            else:
                log.info("sacct unusable; using squeue from now on: %s",
                         (result.stderr or result.stdout).strip()[-200:])
                self._use_sacct = False
        # a job counts as listed only when every element asked about is: sacct may show a
        # fresh array as one "123" row before its elements have records
        unlisted = {self.job_of(n) for n in native_ids if n not in statuses}
        missing = [j for j in job_ids if j in unlisted
                   and not (sacct_answered and now - self._submitted_at.get(j, -1e9) < SACCT_LAG)]
        if missing:
            result = self._run(squeue_argv(missing), check=False)
            if result.returncode != 0 and "invalid job id" not in result.stderr.lower():
                raise CommandError(result.argv, result.returncode, result.stdout, result.stderr)
            statuses.update(parse_squeue(result.stdout))
        return statuses



__all__ = [
    "SlurmExecutor",
    "SlurmSettings",
    "parse_sacct",
    "parse_sbatch",
    "parse_squeue",
    "sacct_argv",
    "sbatch_argv",
    "sbatch_directives",
    "scancel_argv",
    "squeue_argv",
]
