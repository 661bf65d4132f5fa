"""Batch-scheduler executors: SLURM, Grid Engine, PBS and LSF.

:class:`~corral.executors.batch.base.BatchExecutor` owns files, submission, the status cycle and
fault classification; each scheduler module only builds argv lists and parses output, with its
job-script template in ``templates/<kind>.sh.j2``. Scheduler modules are imported on use
(``corral.executors.EXECUTORS``), so importing this package stays cheap.
"""

from __future__ import annotations

from corral.executors.batch.base import BatchExecutor
from corral.executors.batch.script import JobRequest, ScriptBody, job_name, run_tag
from corral.executors.batch.settings import BatchSettings
from corral.executors.batch.status import JobState, JobStatus

__all__ = [
    "BatchExecutor",
    "BatchSettings",
    "JobRequest",
    "JobState",
    "JobStatus",
    "ScriptBody",
    "job_name",
    "run_tag",
]
