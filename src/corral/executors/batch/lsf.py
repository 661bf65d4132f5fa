"""IBM Spectrum LSF: ``#BSUB`` directives (script piped to ``bsub``), ``bjobs -o`` parsing.

Verified only against golden files and the fake scheduler in ``tests/fakes/lsf``, not a real LSF
cluster. Arrays are ``-J "name[1-N]%T"``; elements are ``ID[i]``. Why a job ended comes from the
``exit_reason`` column (``TERM_RUNLIMIT``, ``TERM_MEMLIMIT``, ``TERM_OWNER`` ...).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from corral.errors import CommandError, ExecutorError, ResourceError
from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.script import JobRequest, directive_value
from corral.executors.batch.settings import BatchSettings
from corral.executors.batch.status import JobState, JobStatus, parse_size
from corral.resources import Resources

BJOBS_FIELDS = "jobid jobindex stat exit_code exit_reason job_name max_mem exec_host"
LSF_STATES: dict[str, JobState] = {
    "PEND": JobState.PENDING, "PSUSP": JobState.PENDING, "WAIT": JobState.PENDING,
    "RUN": JobState.RUNNING, "USUSP": JobState.RUNNING, "SSUSP": JobState.RUNNING,
    "PROV": JobState.RUNNING, "UNKWN": JobState.RUNNING,
    "DONE": JobState.COMPLETED, "EXIT": JobState.FAILED, "ZOMBI": JobState.NODE_FAILURE,
}
EXIT_REASONS: tuple[tuple[str, JobState], ...] = (
    ("RUNLIMIT", JobState.TIMEOUT),
    ("MEMLIMIT", JobState.OUT_OF_MEMORY),
    ("SWAP", JobState.OUT_OF_MEMORY),
    ("OWNER", JobState.CANCELLED),
    ("ADMIN", JobState.CANCELLED),
    ("FORCE_OWNER", JobState.CANCELLED),
    ("PREEMPT", JobState.PREEMPTED),
    ("HOST", JobState.NODE_FAILURE),
    ("ZOMBIE", JobState.NODE_FAILURE),
)


@dataclass
class LSFSettings(BatchSettings):
    """Profile options of the LSF executor."""

    queue: str | None = None
    project: str | None = None


# ---------------------------------------------------------------------- building
def bsub_directives(req: JobRequest, settings: LSFSettings) -> list[str]:
    """``#BSUB`` lines; LSF reads them only from a script on standard input."""
    r = req.resources
    if r.qos:
        raise ResourceError("LSF has no qos; remove qos= or pass options via native={'lsf': []}")
    name = req.name
    if req.array_size:
        name += f"[1-{req.array_size}]%{req.throttle or req.array_size}"
    opts = [f'-J "{name}"', f"-o {req.stdout}", f"-e {req.stderr}"]
    queue, project = r.queue or settings.queue, r.account or settings.project
    if queue:
        opts.append(f"-q {directive_value('queue', queue)}")
    if project:
        opts.append(f"-P {directive_value('account', project)}")
    opts += _slots(r)
    if r.memory_bytes:
        mb = math.ceil(r.memory_bytes / 1024**2)
        per_slot = math.ceil(mb / (r.ranks_per_node if r.parallel else r.cores))
        opts += [f"-M {mb}MB", f'-R "rusage[mem={per_slot}MB]"']
    if r.walltime_seconds:
        opts.append(f"-W {math.ceil(r.walltime_seconds / 60)}")
    if r.gpus:
        opts.append(f'-gpu "num={r.gpus}"')
    if r.constraint:
        opts.append(f'-R "select[{directive_value("constraint", r.constraint)}]"')
    if r.exclusive:
        opts.append("-x")
    opts += list(req.extra_args)
    return [f"#BSUB {o}" for o in opts]


def _slots(r: Resources) -> list[str]:
    """``-n`` and the span: a slot per core, or per rank for a parallel job (ranks with more
    than one core each get ``affinity[core(C)]``)."""
    if not r.parallel:
        span = f"span[ptile={r.cores}]" if r.nodes > 1 else "span[hosts=1]"
        return [f"-n {r.cores * r.nodes}", f'-R "{span}"']
    span = f"span[ptile={r.ranks_per_node}]" if r.nodes > 1 or r.tasks_per_node else \
        "span[hosts=1]"
    opts = [f"-n {r.ranks}", f'-R "{span}"']
    if r.rank_cores > 1:
        opts.append(f'-R "affinity[core({r.rank_cores})]"')
    return opts


def bsub_argv(script: str = "", depends_on: Sequence[str] = ()) -> list[str]:
    """``bsub`` (the script goes to standard input); dependencies ``-w "done(ID) && ..."``."""
    argv = ["bsub"]
    if depends_on:
        argv += ["-w", " && ".join(f"done({d})" for d in depends_on)]
    return argv


def parse_bsub(stdout: str) -> str:
    """The id from ``Job <123> is submitted to queue <normal>.``"""
    m = re.search(r"Job <(\d+)> is submitted", stdout)
    if not m:
        raise ExecutorError(f"cannot find a job id in the bsub output {stdout.strip()!r}")
    return m.group(1)


def bjobs_argv(job_ids: Sequence[str]) -> list[str]:
    """All jobs of the list, finished ones included (``-a``), one line each, ``|``-separated."""
    return ["bjobs", "-a", "-noheader", "-o", f"{BJOBS_FIELDS} delimiter='|'", *job_ids]


def bkill_argv(native_ids: Sequence[str]) -> list[str]:
    return ["bkill", *native_ids]


# ---------------------------------------------------------------------- parsing
def _classify(stat: str, reason: str) -> JobState:
    state = LSF_STATES.get(stat, JobState.RUNNING)
    if state is JobState.FAILED:
        upper = reason.upper()
        for needle, mapped in EXIT_REASONS:
            if needle in upper:
                return mapped
    return state


def parse_bjobs(stdout: str) -> dict[str, JobStatus]:
    """Parse ``bjobs -o "BJOBS_FIELDS delimiter='|'" -noheader``; keys ``ID`` or ``ID[i]``."""
    out: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        cols = line.strip().split("|")
        if len(cols) < 8 or not cols[0].isdigit():
            continue
        jid, index, stat, code, reason, _name, mem, host = cols[:8]
        key = f"{jid}[{index}]" if index.isdigit() and int(index) > 0 else jid
        reason = "" if reason.strip() == "-" else reason.strip()
        out[key] = JobStatus(
            _classify(stat, reason),
            exit_code=int(code) if code.strip().isdigit() else (0 if stat == "DONE" else None),
            reason=reason or None,
            max_rss=parse_size(mem.replace(" ", "").replace("bytes", "")) if mem != "-" else None,
            host=host.split(":")[0].split("*")[-1] if host not in ("", "-") else None,
        )
    return out


# ---------------------------------------------------------------------- executor
class LSFExecutor(BatchExecutor):
    """Runs attempts as LSF jobs (job arrays for scatters)."""

    kind: ClassVar[str] = "lsf"
    settings_class: ClassVar[type[BatchSettings]] = LSFSettings
    name_limit: ClassVar[int] = 200
    submit_via_stdin: ClassVar[bool] = True
    array_token: ClassVar[str] = "%I"
    detached_arrays: ClassVar[bool] = True
    """``done(ID)`` of an array waits for every element (checked with the fake scheduler
    only); a map over a map's elements stays single jobs, each after ``done(ID)``."""
    settings: LSFSettings

    def directives(self, req: JobRequest) -> list[str]:
        return bsub_directives(req, self.settings)

    def submit_argv(self, script: str, depends_on: Sequence[str] = (),
                    elementwise: Sequence[str] = ()) -> list[str]:
        # no element-wise dependency here: elementwise_dependency is False, never given
        return bsub_argv(script, depends_on)

    def parse_submit(self, stdout: str) -> str:
        return parse_bsub(stdout)

    def element_id(self, job_id: str, index: int) -> str:
        return f"{job_id}[{index}]"

    def job_of(self, native_id: str) -> str:
        return native_id.split("[")[0]

    def cancel_argv(self, native_ids: Sequence[str]) -> list[str]:
        return bkill_argv(native_ids)

    def query(self, native_ids: Sequence[str]) -> dict[str, JobStatus]:
        jobs = sorted({self.job_of(n) for n in native_ids})
        result = self._run(bjobs_argv(jobs), check=False)
        if result.returncode != 0 and not result.stdout.strip():
            if "not found" not in result.stderr.lower():
                raise CommandError(result.argv, result.returncode, result.stdout, result.stderr)
        return parse_bjobs(result.stdout)


__all__ = [
    "LSFExecutor",
    "LSFSettings",
    "bjobs_argv",
    "bkill_argv",
    "bsub_argv",
    "bsub_directives",
    "parse_bjobs",
    "parse_bsub",
]
