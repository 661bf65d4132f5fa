"""Why tasks ran: `corral runs --compare A B` and `corral why RUN TASK`.

A task reruns when its cache key changes, and its key is built from its code, its arguments, the
digests of its input files and the keys of its upstream tasks. So the reasons are found by
comparing those recorded fields (``tasks.code_hash``, ``params``, ``inputs``, ``upstream``) with
the same task of another run. When nothing differs, the rerun was forced (``--force`` or
``cache=False``), the earlier run failed, or its stored result had been deleted.

What a code hash covers (the task's function, the classes, helpers and module values it reaches:
see :mod:`corral.codehash`) is recorded per run (``runs.options["code_parts"]``), so a code
change is named: "class Model changed", "module value TABLE changed".
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.report import units as fmt
from corral.store.rows import plain
from corral.store.store import Store

MAX_DEPTH = 6
"""How far `why` follows upstream changes to their root cause."""
_RAN = frozenset({"succeeded", "failed", "running"})


@dataclass(frozen=True)
class Reason:
    """One cause of a rerun. ``causes`` explain an upstream change further up the graph."""

    kind: str
    """``new``, ``code``, ``params``, ``input``, ``upstream``, ``key``, ``failed``, ``forced``,
    ``retry`` or ``removed``."""
    message: str
    subject: str | None = None
    """The parameter, file or upstream task concerned."""
    causes: list[Reason] = field(default_factory=list)


@dataclass(frozen=True)
class TaskChange:
    name: str
    status: str
    """``rerun``, ``reused``, ``new``, ``removed`` or ``not run`` (in run B)."""
    reasons: list[Reason]


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    changes: list[TaskChange]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for c in self.changes:
            out[c.status] = out.get(c.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts(), **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Explanation:
    """The answer of `corral why`: did the task run or was it reused, and why."""

    run_id: str
    task: str
    state: str
    outcome: str
    """``ran``, ``reused`` or ``not run``."""
    summary: str
    reasons: list[Reason]
    previous_run: str | None = None
    source_run: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------- field diffs


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    text = repr(value) if isinstance(value, str) else text
    return text if len(text) <= width else text[: width - 1] + "…"


def _param_reasons(old: Any, new: Any) -> list[Reason]:
    if old == new:
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            if k not in old:
                out.append(Reason("params", f"new parameter {k} = {_short(new[k])}", str(k)))
            elif k not in new:
                was = _short(old[k])
                out.append(Reason("params", f"parameter {k} removed (was {was})", str(k)))
            elif old[k] != new[k]:
                change = f"{_short(old[k], 40)} → {_short(new[k], 40)}"
                out.append(Reason("params", f"parameter {k}: {change}", str(k)))
        return out
    return [Reason("params", f"arguments changed: {_short(old, 40)} → {_short(new, 40)}")]


def _input_reasons(old: Mapping[str, str], new: Mapping[str, str]) -> list[Reason]:
    out = []
    for path in sorted(set(old) | set(new)):
        if path not in old:
            out.append(Reason("input", f"new input file {path}", path))
        elif path not in new:
            out.append(Reason("input", f"input file {path} no longer used", path))
        elif old[path] != new[path]:
            digests = f"{old[path][:10]} → {new[path][:10]}"
            out.append(Reason("input", f"input file {path} changed ({digests})", path))
    return out


def _upstream_reasons(old: Mapping[str, str], new: Mapping[str, str]) -> list[Reason]:
    out = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append(Reason("upstream", f"new upstream task {name}"))
        elif name not in new:
            out.append(Reason("upstream", f"upstream task {name} no longer used"))
        elif old[name] != new[name]:
            out.append(Reason("upstream", f"upstream task {name} changed", name))
    return out


class CodeParts:
    """What the code hashes of a store's tasks cover, read from their runs when asked."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._runs: dict[str, Mapping[str, Any]] = {}

    def of(self, task: Mapping[str, Any]) -> Mapping[str, str] | None:
        run_id = str(task.get("run_id"))
        if run_id not in self._runs:
            options = self.store.get_run(run_id).get("options") or {}
            self._runs[run_id] = options.get("code_parts") or {}
        parts = self._runs[run_id].get(str(task.get("code_hash")))
        return parts if isinstance(parts, Mapping) else None


_PART_KINDS = {"function": "function", "class": "class", "value": "module value",
               "closure": "closure variable", "module": "local module"}


def _part(name: str) -> str:
    kind, _, label = name.partition(" ")
    return f"{_PART_KINDS.get(kind, kind)} {label}"


def _code_reasons(old: Mapping[str, Any], new: Mapping[str, Any],
                  parts: CodeParts | None) -> list[Reason]:
    """Which recorded parts of the code changed, else the two code hashes."""
    a, b = str(old.get("code_hash") or "-"), str(new.get("code_hash") or "-")
    (code_a, _, version_a), (code_b, _, version_b) = a.partition(":"), b.partition(":")
    version = [Reason("code", f"task version changed ({version_a or '-'} → {version_b or '-'})")
               ] if version_a != version_b else []
    if code_a == code_b:
        return version
    fallback = [Reason("code", f"code changed ({a[:12]} → {b[:12]})"), *version]
    was, now = (parts.of(old), parts.of(new)) if parts else (None, None)
    if was is None or now is None:
        return fallback
    out, unknown = [], []
    for name in sorted(set(was) | set(now)):
        kind, _, label = name.partition(" ")
        if kind == "unknown" and name in now:
            unknown.append(Reason("code", f"Corral cannot tell what {label} is (not a "
                                          "function, class or value it can hash or find the "
                                          "statement of), so the task runs every time", name))
        elif name not in was:
            out.append(Reason("code", f"now uses {_part(name)}", name))
        elif name not in now:
            out.append(Reason("code", f"no longer uses {_part(name)}", name))
        elif was[name] != now[name]:
            out.append(Reason("code", f"{_part(name)} changed", name))
    return out + unknown + version if out or unknown else fallback


def task_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                     parts: CodeParts | None = None) -> list[Reason]:
    """Reasons why ``new`` (a ``tasks`` row) does not reuse the result of ``old``; ``parts``
    names what changed in the code."""
    reasons: list[Reason] = []
    if (old.get("code_hash") or "") != (new.get("code_hash") or ""):
        reasons += _code_reasons(old, new, parts)
    reasons += _param_reasons(old.get("params"), new.get("params"))
    reasons += _input_reasons(old.get("inputs") or {}, new.get("inputs") or {})
    reasons += _upstream_reasons(old.get("upstream") or {}, new.get("upstream") or {})
    if reasons:
        return reasons
    if old.get("key") != new.get("key"):
        return [Reason("key", "cache key changed though code, arguments and inputs did not "
                              "(task version or cache options changed)")]
    run = old.get("run_id", "")
    if old.get("state") not in ("succeeded", "cached"):
        return [Reason("failed", f"previous attempt {old.get('state')} in run {run}")]
    return [Reason("forced", f"same inputs as in run {run}: rerun forced (--force or "
                             "cache=False), or the stored result had been deleted")]


def _retry_reason(store: Store, task: Mapping[str, Any]) -> Reason | None:
    if int(task.get("attempts") or 0) < 2:
        return None
    rows = store.attempts(str(task["run_id"]), int(task["id"]))
    states = ", ".join(f"{a['number']}: {a['state']}" for a in rows)
    return Reason("retry", f"took {len(rows)} attempts ({states})")


# ---------------------------------------------------------------------------- compare


def _status(task: Mapping[str, Any]) -> str:
    if task.get("cached"):
        return "reused"
    return "rerun" if task.get("state") in _RAN else "not run"


def compare_runs(store: Store, a: str, b: str) -> Comparison:
    """Which tasks of run ``b`` reran and which reused results, and why, relative to run ``a``.

    Tasks are matched by name. Runs are given by id, unique prefix or ``latest``."""
    run_a, run_b = store.get_run(a), store.get_run(b)
    old = {r["name"]: r for r in store.tasks(run_a["id"])}
    new = {r["name"]: r for r in store.tasks(run_b["id"])}
    parts = CodeParts(store)
    changes = []
    for name, task in new.items():
        prev = old.get(name)
        status = _status(task)
        if prev is None:
            changes.append(TaskChange(name, "new", [Reason("new", f"not in run {run_a['id']}")]))
        elif status == "rerun":
            changes.append(TaskChange(name, status, task_differences(prev, task, parts)))
        else:
            changes.append(TaskChange(name, status, []))
    for name in old.keys() - new.keys():
        changes.append(
            TaskChange(name, "removed", [Reason("removed", f"not in run {run_b['id']}")])
        )
    return Comparison(str(run_a["id"]), str(run_b["id"]), changes)


# ---------------------------------------------------------------------------- why


def previous_task(store: Store, task: Mapping[str, Any], before: float) -> dict[str, Any] | None:
    """The newest task with the same name in a run created before ``before``."""
    return store.previous_task(str(task["name"]), str(task["run_id"]), before)


def _same_name_in(store: Store, run_id: str, name: str) -> dict[str, Any] | None:
    rows = store.tasks(run_id, name)
    return plain(rows[0]) if rows else None


def _deepen(
    store: Store, reasons: list[Reason], task: Mapping[str, Any], prev: Mapping[str, Any],
    depth: int, seen: set[str], parts: CodeParts,
) -> list[Reason]:
    """Follow each upstream change to the upstream task's own reasons."""
    out = []
    for r in reasons:
        name = r.subject
        if r.kind != "upstream" or name is None or depth >= MAX_DEPTH:
            out.append(r)
            continue
        up_new = _same_name_in(store, str(task["run_id"]), name)
        up_old = _same_name_in(store, str(prev["run_id"]), name)
        if up_new is None or up_old is None or name in seen:
            out.append(r)
            continue
        seen.add(name)
        causes = _deepen(store, task_differences(up_old, up_new, parts), up_new, up_old,
                         depth + 1, seen, parts)
        out.append(dataclasses.replace(r, causes=causes))
    return out


def _explain_reused(store: Store, run: Mapping[str, Any], task: Mapping[str, Any]) -> Explanation:
    source = store.producer_of_key(str(task["key"]))
    src_run = str(source["run_id"]) if source else None
    when = fmt.timestamp(source.get("finished_at")) if source else "-"
    where = f"produced by run {src_run} at {when}" if source else "its producer is unknown"
    return Explanation(
        run_id=str(run["id"]), task=str(task["name"]), state=str(task["state"]),
        outcome="reused",
        summary=f"{task['name']} was reused from the cache: same key {str(task['key'])[:12]}, "
        f"{where}",
        reasons=[], source_run=src_run,
    )


def explain_task(store: Store, run_id: str, task_name: str) -> Explanation:
    """Whether ``task_name`` ran in the run or was reused, and what made it run.

    The task is compared with the newest task of the same name in any earlier run. The task may
    be given by a unique prefix of its name."""
    run = store.get_run(run_id)
    task = store.find_task(str(run["id"]), task_name)
    if task.get("cached"):
        return _explain_reused(store, run, task)
    name = str(task["name"])
    if task.get("state") not in _RAN:
        return Explanation(
            str(run["id"]), name, str(task["state"]), "not run",
            f"{name} did not run in this run (state {task['state']})", [],
        )
    prev = previous_task(store, task, float(run["created_at"]))
    retry = _retry_reason(store, task)
    if prev is None:
        reasons = [Reason("new", f"never ran before: no earlier run has a task named {name}")]
        return Explanation(
            str(run["id"]), name, str(task["state"]), "ran", f"{name} ran: it never ran before",
            reasons + ([retry] if retry else []),
        )
    parts = CodeParts(store)
    reasons = _deepen(store, task_differences(prev, task, parts), task, prev, 0, {name}, parts)
    first = reasons[0].message if reasons else "unknown reason"
    return Explanation(
        str(run["id"]), name, str(task["state"]), "ran",
        f"{name} ran because {first} (compared with run {prev['run_id']})",
        reasons + ([retry] if retry else []),
        previous_run=str(prev["run_id"]),
    )
