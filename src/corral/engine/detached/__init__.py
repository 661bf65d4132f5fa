"""Detached mode: submit a whole pipeline to a batch scheduler as a chain of dependent jobs,
then exit. No engine stays running; :func:`reconcile` (``corral status``) reads the exit
markers later and records results in the store.

Every not-cached task becomes one job, and each scatter one array job (a map over another
map's elements too, where the scheduler waits element by element). A Python task's arguments
that come from other tasks are :class:`~corral.worker.execute.ResultRef` objects naming the
upstream attempt's ``result.pkl`` (the worker loads them); a shell command using such a value is
rendered by the worker when its job starts (:mod:`corral.worker.render`). A job waits for the
upstream jobs with the scheduler's dependency. On SLURM that is ``afterok`` with ``--kill-on-invalid-dep=yes``, so a
failed parent removes its descendants. Grid Engine's ``-hold_jid`` releases a job when its
parents *end*, failed or not, so there the job script first checks the parents' exit markers
and exits without running the task unless they say ``succeeded``; :func:`reconcile` marks such
tasks skipped and deletes jobs a failed parent still holds (a parent stuck in ``Eqw`` would
hold them forever). Dynamic scatters (``each(...)``) cannot be planned ahead and are refused.

Retries (``@task(retries=N)``) happen when :func:`reconcile` finds a failed attempt: see
:mod:`.retry`. What :func:`reconcile` needs later is kept in
``<work root>/detach.pkl``.
"""

from .reconcile import reconcile
from .state import load_state, task_value
from .submit import prepare_jobs, submit_detached

__all__ = ["load_state", "prepare_jobs", "reconcile", "submit_detached", "task_value"]
