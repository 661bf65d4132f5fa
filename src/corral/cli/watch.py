"""``corral status RUN --watch``: the status view refreshed in place until the run ends."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.live import Live

from corral.states import TERMINAL_RUN_STATES, RunState

if TYPE_CHECKING:
    from corral.store import Store

from . import views
from .common import console, err_console
from .layout import interactive
from .statusview import (
    big_status_renderable,
    big_status_view,
    counted_in_sql,
    status_renderable,
    status_view,
)

ENDED = TERMINAL_RUN_STATES | {RunState.INTERRUPTED, RunState.PAUSED}
"""States in which a run without a live engine stays until someone acts."""


def watch_run(store: Store, run_id: str, limit: int, as_json: bool, interval: float,
              wide: bool = False) -> int:
    """Refresh the status of ``run_id`` every ``interval`` seconds (reconciling detached runs)
    until it ends; print the final view (or its JSON) and return the exit code: 0 if the run
    succeeded, 1 otherwise, 130 if the user stopped watching."""
    from corral.engine.lifecycle import reconcile

    live = None
    if not as_json and interactive(console):  # else only the final view is printed
        live = Live(console=console, auto_refresh=False, redirect_stdout=False,
                    redirect_stderr=False)
    footer = f"[dim]refreshed every {interval:g}s; Ctrl-C stops watching, not the run[/]"
    try:
        if live is not None:
            live.start()
        while True:
            run_row = reconcile(store, run_id)
            big = not as_json and counted_in_sql(run_row, limit)
            rows = [] if big else views.task_rows(store.tasks(run_id), store.attempts(run_id))
            ended = _ended(store, run_row)
            if live is not None:
                shown = None if ended else footer
                view = (big_status_renderable(console, store, run_row, limit, shown, wide) if big
                        else status_renderable(console, run_row, rows, limit, shown, wide))
                live.update(view, refresh=True)
            if ended:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        if live is not None:
            live.stop()
        err_console.print(f"[yellow]stopped watching run {run_id}; the run goes on "
                          f"(corral status {run_id})[/]")
        return 130
    finally:
        if live is not None:
            live.stop()
    if as_json:
        views.print_json(console, {"run": run_row, "tasks": rows})
    elif live is None and big:
        big_status_view(console, store, run_row, limit, wide)
    elif live is None:
        status_view(console, run_row, rows, limit, wide)
    _hint(run_row)
    return 0 if run_row["state"] == RunState.SUCCEEDED else 1


def _ended(store: Store, run_row: Mapping[str, Any]) -> bool:
    """Ended: a final state, or stopped (interrupted, paused) with no engine left to go on.
    While an engine is alive the run goes on, whatever its row says (a resumed run keeps its
    old state until its engine has claimed it)."""
    return run_row["state"] in ENDED and not store.engine_alive(run_row)


def _hint(run_row: Mapping[str, Any]) -> None:
    rid, state = run_row["id"], run_row["state"]
    if state == RunState.INTERRUPTED:
        err_console.print(f"run {rid} was interrupted (its engine is gone); continue it with: "
                          f"corral resume {rid}", markup=False)
    elif state == RunState.PAUSED:
        err_console.print(f"run {rid} is paused and no engine runs it; continue it with: "
                          f"corral resume {rid}", markup=False)
    elif state != RunState.SUCCEEDED:
        err_console.print(f"run {rid} {state}; see corral logs {rid} TASK", markup=False)
