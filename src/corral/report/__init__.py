"""Provenance and reporting: metrics, HTML reports, lineage, `why`, run comparison, RO-Crate and
PROV export.

Every entry point reads the state store only, returns plain data (dataclasses with ``to_json``),
and has a separate renderer (rich for the terminal, Jinja2 + Plotly for HTML). Modules import
their heavy dependencies (plotly, rocrate, prov) lazily, so ``corral status`` stays fast.
"""

from __future__ import annotations

__all__ = [
    "RunData",
    "collect_environment",
    "compare_runs",
    "explain_task",
    "export_prov",
    "export_ro_crate",
    "lineage",
    "load_run",
    "report_context",
    "run_metrics",
    "write_report",
]

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.environment import collect_environment
    from corral.report._data import RunData, load_run
    from corral.report.compare import compare_runs, explain_task
    from corral.report.html import report_context, write_report
    from corral.report.lineage import lineage
    from corral.report.metrics import run_metrics
    from corral.report.rocrate import export_prov, export_ro_crate

_WHERE = {
    "RunData": "_data",
    "load_run": "_data",
    "report_context": "html",
    "collect_environment": "environment",
    "compare_runs": "compare",
    "explain_task": "compare",
    "export_prov": "rocrate",
    "export_ro_crate": "rocrate",
    "lineage": "lineage",
    "run_metrics": "metrics",
    "write_report": "html",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"corral.report.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'corral.report' has no attribute {name!r}")
