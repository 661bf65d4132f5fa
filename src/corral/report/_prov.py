"""W3C PROV-JSON of a run (`corral export RUN --prov FILE`), with the ``prov`` library.

Entities are the run's artifacts (files and stored values, named by digest) and the input files
its tasks read; activities are attempts; agents are the hosts that ran them and the Corral engine,
which acted on the plan (the pipeline source). Relations: ``used`` (input files and upstream
values), ``wasGeneratedBy`` (artifact -> attempt), ``wasAssociatedWith`` (attempt -> host, and
attempt -> engine with the plan).
"""

from __future__ import annotations

import datetime as _dt
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from corral.errors import UsageError
from corral.optional import require
from corral.report._data import RunData, cpu_of, load_run, wall_of
from corral.store.store import Store

TERMS = "urn:corral:terms#"


def _slug(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _time(unix: float | None) -> _dt.datetime | None:
    return None if unix is None else _dt.datetime.fromtimestamp(float(unix), _dt.UTC)


def _value_digests(store: Store, keys: Iterable[str]) -> dict[str, str]:
    """Digest of the stored value of each task key (any run)."""
    return store.value_digests(keys)


class _ProvBuilder:
    def __init__(self, data: RunData) -> None:
        from prov.constants import PROV
        from prov.model import ProvDocument

        self.data = data
        self.doc = ProvDocument()
        self.doc.add_namespace("corral", TERMS)
        self.ns = self.doc.add_namespace("run", f"urn:corral:run:{_slug(data.run_id)}:")
        env = data.run.get("environment") or {}
        label = f"Corral {env.get('corral') or ''}".strip()
        self.engine = self.doc.agent(self.ns["engine"], {"prov:type": PROV["SoftwareAgent"],
                                                         "prov:label": label})
        source = str(data.run.get("source") or "")
        self.plan = self.doc.entity(self.ns["pipeline"], {"prov:type": PROV["Plan"],
                                                          "prov:label": source})
        self.entities: dict[str, Any] = {}
        self.hosts: dict[str, Any] = {}

    def entity(self, digest: str, label: str, attrs: Mapping[str, Any]) -> Any:
        if digest not in self.entities:
            record: dict[Any, Any] = {"prov:label": label, **attrs}
            self.entities[digest] = self.doc.entity(self.ns[f"data/{digest}"], record)
        return self.entities[digest]

    def artifact(self, a: Mapping[str, Any]) -> None:
        label = str(a["path"]) if a["path"] else f"value of task key {str(a['task_key'])[:12]}"
        attrs: dict[str, Any] = {"corral:kind": a["kind"], "corral:size": int(a["size"])}
        if a["path"]:
            attrs["prov:location"] = str(a["path"])
        self.entity(str(a["digest"]), label, attrs)

    def host(self, name: str) -> Any:
        if name not in self.hosts:
            self.hosts[name] = self.doc.agent(self.ns[f"host/{_slug(name)}"], {"prov:label": name})
        return self.hosts[name]

    def attempt(self, task: Mapping[str, Any], att: Mapping[str, Any], values: Mapping[str, str]) -> None:
        attrs: dict[Any, Any] = {
            "prov:label": f"{task['name']} attempt {att['number']}", "corral:task": task["name"],
            "corral:state": att["state"], "corral:executor": att.get("executor") or "",
            "corral:wall": wall_of(att) or 0.0, "corral:cpu": cpu_of(att) or 0.0,
            "corral:peak_rss": int(att.get("peak_rss") or 0),
            "corral:code_hash": str(task.get("code_hash") or ""),
        }
        act = self.doc.activity(self.ns[f"attempt/{_slug(str(att['id']))}"],
                                _time(att.get("started_at")), _time(att.get("ended_at")), attrs)
        self.doc.wasAssociatedWith(act, self.host(str(att.get("host") or "unknown")))
        self.doc.wasAssociatedWith(act, self.engine, self.plan)
        for path, digest in (task.get("inputs") or {}).items():
            self.doc.used(act, self.entity(digest, path, {"prov:location": path}))
        for key in (task.get("upstream") or {}).values():
            if key in values:
                self.doc.used(act, self.entity(values[key], f"value of task key {key[:12]}", {}))


def build_prov(store: Store, data: RunData) -> Any:
    """The ``prov.model.ProvDocument`` of a run."""
    b = _ProvBuilder(data)
    artifacts = store.artifacts(data.run_id)
    for a in artifacts:
        b.artifact(a)
    upstream = [k for task in data.tasks for k in (task.get("upstream") or {}).values()]
    values = _value_digests(store, upstream)
    for task in data.tasks:
        for att in data.task_attempts(task):
            b.attempt(task, att, values)
    for a in artifacts:
        if a.get("attempt_id"):
            activity = b.ns[f"attempt/{_slug(str(a['attempt_id']))}"]
            b.doc.wasGeneratedBy(b.entities[str(a["digest"])], activity)
    return b.doc


def export_prov(store: Store, run_id: str, path: str | Path) -> Path:
    """Write the W3C PROV-JSON document of a run (id, unique prefix or ``latest``) to ``path``."""
    require("prov.model", "the PROV-JSON export", None)
    target = Path(path)
    doc = build_prov(store, load_run(store, run_id))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(doc.serialize(format="json", indent=1), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}; choose another path") from exc
    return target
