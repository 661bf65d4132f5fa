"""``corral export``: write a pipeline as a standalone, readable batch-submission script.

The script (``pipeline.sh``) submits one job per task, and one array job per scatter, with the
scheduler's own dependency syntax; the job scripts are written beside it in ``pipeline.jobs/``
(named after the task or scatter). They are the same job
scripts and payload files detached mode submits, so each job runs the real task with
``python -m corral.worker``. The run is recorded in the store (state ``exported``); after
the script ran, ``corral status`` (:func:`corral.engine.detached.reconcile`) records results.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine.detached.submit import (
    Prepared,
    PreparedUnit,
    attempt_row,
    prepare_jobs,
    save_state,
    write_unit,
)
from corral.errors import UsageError
from corral.states import RunState

if TYPE_CHECKING:
    from corral.engine.prepare import RunConfig
    from corral.model import Pipeline

FORMATS = ("sbatch", "sge")
_KIND = {"sbatch": "slurm", "slurm": "slurm", "sge": "sge", "qsub": "sge"}
_WAIT = {"slurm": "sbatch --dependency=afterok", "sge": "qsub -hold_jid; each job script checks "
         "that the tasks it needs succeeded"}
_PARSE = {
    # sbatch --parsable prints "ID" or "ID;cluster"; qsub -terse prints "ID"
    "slurm": '{var}="${{{var}%%;*}}"',
    "sge": '{var}="${{{var}%%.*}}"',
}


def export_script(pipeline: Pipeline[Any, Any], params: Mapping[str, Any], cfg: RunConfig,
                  dest: Path, fmt: str = "sbatch") -> Path:
    """Write ``dest`` (e.g. ``pipeline.sh``) and ``<dest stem>.jobs/job_N.sh``; return ``dest``.

    ``fmt`` is ``sbatch`` (SLURM) or ``sge``. Cached tasks are left out (their values are
    already in the store). Raises :class:`UsageError` for dynamic scatters."""
    kind = _KIND.get(fmt)
    if kind is None:
        raise UsageError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    dest = Path(dest).resolve()
    p = prepare_jobs(pipeline, params, cfg, kind=kind)
    try:
        jobs_dir = dest.parent / f"{dest.stem}.jobs"
        jobs_dir.mkdir(parents=True, exist_ok=True)
        lines = _header(p, pipeline.name, kind, jobs_dir)
        names: list[str] = []
        for unit in p.units:
            name = _unique(re.sub(r"[^A-Za-z0-9_]+", "_", unit.name).strip("_") or "task", names)
            names.append(name)
            lines += _unit_lines(p, unit, name, names, jobs_dir, kind)
            for job in unit.jobs:
                p.engine.rec.attempt_new(attempt_row(p, job, None))
        if not p.units:
            lines.append("echo 'every task is cached: nothing to submit'")
        dest.write_text("\n".join(lines) + "\n")
        dest.chmod(0o755)
        p.engine.rec.flush()
        save_state(p)
    except BaseException:
        p.store.release_run(p.run_id, state=RunState.FAILED.value, finished_at=time.time(),
                            error="export failed")
        raise
    finally:
        p.executor.shutdown()
    final = RunState.EXPORTED.value if p.jobs else RunState.SUCCEEDED.value
    p.store.release_run(p.run_id, state=final)
    return dest


def _header(p: Prepared, pipeline: str, kind: str, jobs_dir: Path) -> list[str]:
    return [
        "#!/usr/bin/env bash",
        f"# Pipeline {pipeline!r}, exported by corral for {kind} "
        f"on {time.strftime('%Y-%m-%d %H:%M:%S')}.",
        f"# Run {p.run_id}; working directory {p.engine.plan.cwd}.",
        "# One job per task and one array job per scatter (element i runs the scatter's task i);",
        f"# each job waits for the jobs it needs ({_WAIT[kind]}).",
        "# Plain bash and the scheduler's commands suffice here; the jobs run each task with",
        "# `python -m corral.worker`, so Corral must be installed where they run.",
        f"# Job scripts: {jobs_dir}; task payloads: {p.work_root}",
        f"# After the jobs ended, `corral status {p.run_id}` records their results.",
        "set -euo pipefail",
        f"cd {shlex.quote(str(jobs_dir))}",
    ]


def _unit_lines(p: Prepared, unit: PreparedUnit, name: str, names: list[str], jobs_dir: Path,
                kind: str) -> list[str]:
    """Write the unit's job script into ``jobs_dir``; return the lines submitting it
    (``names``: the shell variable suffix of each unit before it)."""
    write_unit(p.executor, unit)  # an array's listing of attempt directories, its log dir
    script = jobs_dir / f"{name}.sh"
    script.write_text(unit.rendered.script)
    script.chmod(0o755)
    after, elementwise = unit.dependencies(p.executor, lambda u: f"__JID_{u}__")
    argv = p.executor.submit_argv(script.name, after, elementwise)
    cmd = " ".join(shlex.quote(a) for a in argv)
    waited = {w.unit for w in unit.after} | {u for u in [unit.elementwise] if u is not None}
    for u in waited:  # ${...} before an element's suffix (_3 on SLURM)
        cmd = re.sub(rf"__JID_{u}__(?=\w)", f"${{jid_{names[u]}}}", cmd)
        cmd = cmd.replace(f"__JID_{u}__", f"$jid_{names[u]}")
    if unit.is_array:
        first, last = unit.jobs[0].task.name, unit.jobs[-1].task.name
        throttle = min(p.executor.settings.array_throttle, len(unit.jobs))
        comment = (f"# {unit.name}: {len(unit.jobs)} tasks ({first} .. {last}) as one array "
                   f"job, at most {throttle} at once")
        if unit.elementwise is not None:
            comment += (f"; element i waits for element i of {names[unit.elementwise]} "
                        f"({'aftercorr' if kind == 'slurm' else '-hold_jid_ad'})")
    else:
        comment = f"# {unit.name}"
    var = f"jid_{name}"
    return ["", comment, f"{var}=$({cmd})", _PARSE[kind].format(var=var),
            f'echo "{unit.name}: job ${var}"']


def _unique(name: str, taken: list[str]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


def export_run(workdir: Path, run_id: str, dest: Path, fmt: str = "sbatch",
               db: str | None = None) -> Path:
    """``corral export RUN``: export the pipeline and parameters of an existing run (its
    pipeline file is loaded again) as a new run; see :func:`export_script`."""
    from corral.engine.prepare import RunConfig
    from corral.loading import load_pipeline
    from corral.store import Store

    run = Store.open(Path(workdir), db).get_run(run_id)
    source = run["source"] or ""
    if not Path(source).is_file():
        raise UsageError(
            f"run {run['id']} came from {source!r}, not a pipeline file; export the pipeline "
            "with corral.export.export_script"
        )
    pipeline = load_pipeline(source, run["pipeline"])
    cfg = RunConfig(workdir=Path(run["workdir"]), db=db, source=source, new=True)
    return export_script(pipeline, run["params"] or {}, cfg, dest, fmt)


__all__ = ["FORMATS", "export_run", "export_script"]
