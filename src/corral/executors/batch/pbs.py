"""PBS Pro / OpenPBS: ``qsub`` directives (``select``/``place``), ``qstat -f -x -t`` parsing.

Verified only against golden files and the fake scheduler in ``tests/fakes/pbs``, not a real
PBS server. ``Exit_status`` follows PBS Pro: negative values are PBS's own codes (-29 walltime,
-27/-26 memory), values above 256 mean the job was killed by signal ``N - 256``.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from corral.errors import CommandError, ExecutorError, ResourceError
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.script import JobRequest, directive_value
from corral.executors.batch.settings import BatchSettings
from corral.executors.batch.status import JobState, JobStatus, parse_size
from corral.resources import format_walltime

PBS_STATES: dict[str, JobState] = {
    "Q": JobState.PENDING, "H": JobState.PENDING, "W": JobState.PENDING, "T": JobState.PENDING,
    "M": JobState.PENDING, "B": JobState.RUNNING, "R": JobState.RUNNING, "E": JobState.RUNNING,
    "S": JobState.RUNNING, "U": JobState.RUNNING,
}
EXIT_CODES: dict[int, tuple[JobState, str]] = {
    -29: (JobState.TIMEOUT, "walltime limit exceeded"),
    -27: (JobState.OUT_OF_MEMORY, "memory limit exceeded"),
    -26: (JobState.OUT_OF_MEMORY, "virtual memory limit exceeded"),
    -3: (JobState.NODE_FAILURE, "job could not start on its node (will not be retried by PBS)"),
    -1: (JobState.NODE_FAILURE, "job execution failed before it started"),
}


@dataclass
class PBSSettings(BatchSettings):
    """Profile options of the PBS executor."""

    queue: str | None = None
    account: str | None = None


# ---------------------------------------------------------------------- building
def qsub_directives(req: JobRequest, settings: PBSSettings) -> list[str]:
    """``#PBS`` lines: one ``select`` chunk per node, ``place=scatter`` across nodes."""
    r = req.resources
    if r.qos:
        raise ResourceError("PBS has no qos; remove qos= or pass options via native={'pbs': []}")
    opts = [f"-N {req.name}", f"-o {req.stdout}", f"-e {req.stderr}"]
    queue, account = r.queue or settings.queue, r.account or settings.account
    if queue:
        opts.append(f"-q {directive_value('queue', queue)}")
    if account:
        opts.append(f"-A {directive_value('account', account)}")
    chunk = f"select={r.nodes}:ncpus={r.cores}"
    if r.parallel:
        if r.ranks != r.nodes * r.ranks_per_node:
            raise ResourceError(
                f"PBS starts the same ranks on every node, and tasks={r.ranks} does not divide "
                f"over nodes={r.nodes}; make tasks a multiple of nodes or give tasks_per_node"
            )
        chunk = (f"select={r.nodes}:ncpus={r.ranks_per_node * r.rank_cores}"
                 f":mpiprocs={r.ranks_per_node}")
        if r.rank_cores > 1:
            chunk += f":ompthreads={r.rank_cores}"
    if r.memory_bytes:
        chunk += f":mem={math.ceil(r.memory_bytes / 1024**2)}mb"
    if r.gpus:
        chunk += f":ngpus={r.gpus}"
    if r.constraint:
        feature = directive_value("constraint", r.constraint)
        chunk += f":{feature}" if "=" in feature else f":{feature}=True"
    opts.append(f"-l {chunk}")
    place = "scatter" if r.nodes > 1 else "pack"
    if r.exclusive:
        place += ":excl"
    if r.nodes > 1 or r.exclusive:
        opts.append(f"-l place={place}")
    if r.walltime_seconds:
        opts.append(f"-l walltime={format_walltime(r.walltime_seconds)}")
    if req.array_size:
        opts.append(f"-J 1-{req.array_size}%{req.throttle or req.array_size}")
    opts += list(req.extra_args)
    return [f"#PBS {o}" for o in opts]


def qsub_argv(script: str, depends_on: Sequence[str] = ()) -> list[str]:
    """``qsub``; with dependencies ``-W depend=afterok:ID:ID``."""
    argv = ["qsub"]
    if depends_on:
        argv += ["-W", f"depend=afterok:{':'.join(depends_on)}"]
    return [*argv, script]


def parse_qsub(stdout: str) -> str:
    """The job id line printed by ``qsub`` (``123.server`` or ``123[].server``)."""
    for line in stdout.splitlines():
        text = line.strip()
        if re.match(r"^\d+(\[\])?(\.[\w.-]+)?$", text):
            return text
    raise ExecutorError(f"cannot find a job id in the qsub output {stdout.strip()!r}")


def qstat_argv(job_ids: Sequence[str]) -> list[str]:
    """Full status, finished jobs included (``-x``), array elements expanded (``-t``)."""
    return ["qstat", "-f", "-x", "-t", *job_ids]


def qdel_argv(native_ids: Sequence[str]) -> list[str]:
    return ["qdel", *native_ids]


# ---------------------------------------------------------------------- parsing
def _pbs_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return time.mktime(time.strptime(text.strip(), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


def _records(text: str) -> list[dict[str, str]]:
    """``Job Id: X`` blocks of ``key = value`` lines (tab-indented lines continue a value)."""
    records: list[dict[str, str]] = []
    key = ""
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            records.append({"Job Id": line.partition(":")[2].strip()})
            key = ""
        elif records and " = " in line and not line.startswith("\t"):
            key, _, value = line.strip().partition(" = ")
            records[-1][key] = value
        elif records and key and line.startswith("\t"):
            records[-1][key] += line.strip()
    return records


def _classify(rec: dict[str, str]) -> tuple[JobState, int | None, str | None]:
    state = rec.get("job_state", "")
    if state not in ("F", "X"):
        return PBS_STATES.get(state, JobState.RUNNING), None, rec.get("comment")
    text = rec.get("Exit_status", "")
    code = int(text) if text.lstrip("-").isdigit() else None
    if code is None:
        return JobState.CANCELLED, None, rec.get("comment") or "deleted before it ran"
    if code == 0:
        return JobState.COMPLETED, 0, None
    if code in EXIT_CODES:
        st, why = EXIT_CODES[code]
        return st, code, why
    if code > 256:
        signal = code - 256
        st = JobState.CANCELLED if signal in (9, 15) else JobState.FAILED
        return st, code, f"killed by signal {signal}"
    if code < 0:
        return JobState.FAILED, code, f"PBS could not run the job (exit status {code})"
    return JobState.FAILED, code, None


def parse_qstat_full(text: str) -> dict[str, JobStatus]:
    """Parse ``qstat -f -x -t`` output, keyed by job or array-element id."""
    out: dict[str, JobStatus] = {}
    for rec in _records(text):
        state, code, reason = _classify(rec)
        host = rec.get("exec_host", "").split("/")[0] or None
        out[rec["Job Id"]] = JobStatus(
            state,
            exit_code=code,
            reason=reason,
            submitted=_pbs_time(rec.get("qtime")),
            started=_pbs_time(rec.get("stime")),
            ended=_pbs_time(rec.get("mtime")) if state.terminal else None,
            max_rss=parse_size(rec.get("resources_used.mem"), "K"),
            host=host,
        )
    return out


# ---------------------------------------------------------------------- executor
class PBSExecutor(BatchExecutor):
    """Runs attempts as PBS Pro / OpenPBS jobs (``-J`` arrays for scatters)."""

    kind: ClassVar[str] = "pbs"
    settings_class: ClassVar[type[BatchSettings]] = PBSSettings
    name_limit: ClassVar[int] = 230
    array_token: ClassVar[str] = "^array_index^"
    detached_arrays: ClassVar[bool] = True
    """``afterok:ID[].server`` waits for the whole array (PBS Pro has no element-wise
    dependency; checked with the fake scheduler only)."""
    settings: PBSSettings

    def directives(self, req: JobRequest) -> list[str]:
        return qsub_directives(req, self.settings)

    def submit_argv(self, script: str, depends_on: Sequence[str] = (),
                    elementwise: Sequence[str] = ()) -> list[str]:
        # no element-wise dependency here: elementwise_dependency is False, never given
        return qsub_argv(script, depends_on)

    def parse_submit(self, stdout: str) -> str:
        return parse_qsub(stdout)

    def element_id(self, job_id: str, index: int) -> str:
        return job_id.replace("[]", f"[{index}]", 1)

    def job_of(self, native_id: str) -> str:
        return re.sub(r"\[\d+\]", "[]", native_id, count=1)

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return qdel_argv(native_ids)

    def query(self, native_ids: Sequence[str]) -> dict[str, JobStatus]:
        jobs = sorted({self.job_of(n) for n in native_ids})
        result = self._run(qstat_argv(jobs), check=False)
        if result.returncode != 0 and not result.stdout.strip():
            if "unknown job id" not in result.stderr.lower():
                raise CommandError(result.argv, result.returncode, result.stdout, result.stderr)
        return parse_qstat_full(result.stdout)


__all__ = [
    "PBSExecutor",
    "PBSSettings",
    "parse_qsub",
    "parse_qstat_full",
    "qdel_argv",
    "qstat_argv",
    "qsub_argv",
    "qsub_directives",
]
