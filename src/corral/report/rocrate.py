"""Export a run as a Workflow Run RO-Crate (https://w3id.org/ro/wfrun/workflow/0.5) and as
W3C PROV-JSON.

The crate holds the pipeline source as the main ``ComputationalWorkflow``, one ``CreateAction``
for the run (instrument = workflow, object = raw inputs and parameters, result = outputs) and one
``CreateAction`` per task that ran (Process Run Crate style, instrument = a
``SoftwareApplication`` per task name). Output and input files are copied into the crate when
they are small enough, and referenced by ``file://`` URI otherwise.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import mimetypes
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.errors import UsageError
from corral.optional import require
from corral.report import units as fmt
from corral.report._data import RunData, cpu_of, load_run, wall_of
from corral.store.store import Store

WFRUN_PROFILE = "https://w3id.org/ro/wfrun/workflow/0.5"
PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5": ("Process Run Crate", "0.5"),
    "https://w3id.org/ro/wfrun/workflow/0.5": ("Workflow Run Crate", "0.5"),
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": ("Workflow RO-Crate", "1.0"),
}
BIOSCHEMAS_WORKFLOW = "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"
DEFAULT_LICENSE = "https://spdx.org/licenses/CC-BY-4.0"
MAX_COPY_BYTES = 100 * 1024**2
"""Files up to this size are copied into the crate; larger ones are referenced."""
_TYPES = {bool: "Boolean", int: "Integer", float: "Float", str: "Text"}
_STATUS = {"succeeded": "CompletedActionStatus", "failed": "FailedActionStatus"}


def _slug(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _source_file(source: str) -> Path:
    """The pipeline file of ``runs.source``: a path, or ``module:function`` of an importable
    module (resolved through its spec)."""
    path = Path(source)
    if path.is_file() or ":" not in source:
        return path
    import importlib.util

    module = source.split(":", 1)[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return path
    return Path(spec.origin) if spec and spec.origin else path


def _status(state: str) -> str:
    return f"http://schema.org/{_STATUS.get(state, 'FailedActionStatus')}"


def _last_line(text: str | None) -> str | None:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else None


class _CrateBuilder:
    def __init__(self, data: RunData, store: Store, copy: bool, max_copy: int) -> None:
        from rocrate.rocrate import ROCrate

        self.data, self.store, self.copy, self.max_copy = data, store, copy, max_copy
        self.crate = ROCrate(version="1.1")
        self.files: dict[str, Any] = {}
        self.used_names: set[str] = set()
        self.workdir = Path(str(data.run.get("workdir") or "/"))

    # ------------------------------------------------------------------ files

    def file(self, path: str, digest: str | None, size: int | None, folder: str) -> Any:
        """The crate entity of a file: copied under ``folder/`` or referenced by URI."""
        if path in self.files:
            return self.files[path]
        p = Path(path)
        props: dict[str, Any] = {"name": p.name}
        if digest:
            props["identifier"] = f"blake2b-128:{digest}"
        kind = mimetypes.guess_type(p.name)[0]
        if kind:
            props["encodingFormat"] = kind
        exists = p.is_file()
        if exists:
            size = p.stat().st_size
        if size is not None:
            props["contentSize"] = str(size)
        if self.copy and exists and (size or 0) <= self.max_copy:
            entity = self.crate.add_file(str(p), dest_path=self._dest(p, folder), properties=props)
        else:
            props["description"] = "not copied into the crate (too large or not on this machine)"
            entity = self.crate.add_file(p.resolve().as_uri(), properties=props)
        self.files[path] = entity
        return entity

    def _dest(self, p: Path, folder: str) -> str:
        try:
            rel = p.resolve().relative_to(self.workdir.resolve()).as_posix()
        except ValueError:
            rel = p.name
        dest, n = f"{folder}/{rel}", 1
        while dest in self.used_names:
            n += 1
            dest = f"{folder}/{n}-{p.name}"
        self.used_names.add(dest)
        return dest

    # ------------------------------------------------------------------ entities

    def add(self, identifier: str, props: dict[str, Any]) -> Any:
        from rocrate.model.contextentity import ContextEntity

        return self.crate.add(ContextEntity(self.crate, identifier, properties=props))

    def profiles(self) -> None:
        refs = []
        for uri, (name, version) in PROFILES.items():
            self.add(uri, {"@type": "CreativeWork", "name": name, "version": version})
            refs.append({"@id": uri})
        self.crate.root_dataset["conformsTo"] = refs

    def workflow(self, env: Mapping[str, Any]) -> Any:
        from rocrate.model.computerlanguage import ComputerLanguage

        lang = self.crate.add(ComputerLanguage(self.crate, "#python", properties={
            "name": "Python", "url": {"@id": "https://www.python.org/"},
            "version": str(env.get("python") or ""),
        }))
        run = self.data.run
        source = _source_file(str(run.get("source") or ""))
        props = {"name": str(run.get("pipeline") or source.name),
                 "description": f"Corral pipeline {run.get('pipeline')} ({run.get('source')})"}
        if source.is_file():
            wf = self.crate.add_workflow(
                str(source), dest_path=f"workflow/{source.name}", main=True, lang=lang,
                properties=props,
            )
        else:
            wf = self.crate.add_workflow(
                source=None, dest_path="workflow/pipeline.py", main=True, lang=lang,
                properties={**props, "description": f"{props['description']}; source not found "
                            "on this machine"},
            )
        wf["conformsTo"] = {"@id": BIOSCHEMAS_WORKFLOW}
        if source.is_file():
            from corral.hashing import file_digest

            wf["version"] = f"sha-{file_digest(source)[:12]}"
        requirements = self.requirements(env)
        if requirements:
            wf["softwareRequirements"] = requirements
        return wf

    def requirements(self, env: Mapping[str, Any]) -> list[Any]:
        out = []
        for name, version in sorted((env.get("packages") or {}).items()):
            out.append(self.add(f"#package-{_slug(name)}", {
                "@type": "SoftwareApplication", "name": name, "softwareVersion": str(version),
                "url": {"@id": f"https://pypi.org/project/{_slug(name)}/"},
            }))
        return out

    def parameters(self) -> tuple[list[Any], list[Any]]:
        formal, values = [], []
        for key, value in (self.data.run.get("params") or {}).items():
            kind = _TYPES.get(type(value), "Text")
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            fp = self.crate.add_formal_parameter(
                name=str(key), additionalType=kind, identifier=f"#param-{_slug(str(key))}",
            )
            pv = self.add(f"#pv-{_slug(str(key))}", {
                "@type": "PropertyValue", "name": str(key),
                "value": value if isinstance(value, bool | int | float) else text,
                "exampleOfWork": {"@id": fp.id},
            })
            fp["workExample"] = pv
            formal.append(fp)
            values.append(pv)
        return formal, values

    def example_of(self, entity: Any, identifier: str, name: str) -> Any:
        fp = self.crate.get(identifier)
        if fp is None:
            fp = self.crate.add_formal_parameter(name=name, additionalType="File",
                                                 identifier=identifier)
        fp.append_to("workExample", entity)
        entity.append_to("exampleOfWork", fp)
        return fp


def _outputs(store: Store, data: RunData) -> list[dict[str, Any]]:
    """Files of the run's results: written in this run, or reused from earlier runs."""
    rows = [a for a in store.artifacts(data.run_id) if a["kind"] == "file" and a["path"]]
    have = {a["path"] for a in rows}
    by_id = {int(t["id"]): t for t in data.tasks}
    reused = [t["key"] for t in data.tasks if t.get("cached")]
    keys = {t["key"]: t for t in data.tasks}
    for key, files in store.completed(reused).items():  # files: {} for value-only results
        for path, digest in files.items():
            if path not in have:
                rows.append({"path": path, "digest": digest, "size": None,
                             "task_id": int(keys[key]["id"]), "attempt_id": None})
                have.add(path)
    return [r for r in rows if r.get("task_id") is None or int(r["task_id"]) in by_id]


def _task_description(task: Mapping[str, Any], attempt: Mapping[str, Any]) -> str:
    where = f"{attempt.get('executor')} on {attempt.get('host') or '?'}"
    if attempt.get("native_id"):
        where += f" (job {attempt['native_id']})"
    return (
        f"Task {task['name']}, attempt {attempt.get('number')} of {task.get('attempts')}, "
        f"{where}: wall {fmt.duration(wall_of(attempt))}, CPU {fmt.duration(cpu_of(attempt))}, "
        f"peak memory {fmt.size(attempt.get('peak_rss'))}; code {task.get('code_hash')}"
    )


def _task_actions(b: _CrateBuilder, outputs: list[dict[str, Any]]) -> list[Any]:
    by_task: dict[int, list[Any]] = {}
    for row in outputs:
        if row.get("task_id") is not None:
            by_task.setdefault(int(row["task_id"]), []).append(b.files[row["path"]])
    tools: dict[str, Any] = {}
    actions = []
    for task in b.data.tasks:
        attempts = b.data.task_attempts(task)
        if task.get("cached") or not attempts:
            continue
        grp = str(task.get("grp") or task["name"])
        if grp not in tools:
            tools[grp] = b.add(f"#task-{_slug(grp)}", {
                "@type": "SoftwareApplication", "name": grp,
                "softwareVersion": str(task.get("code_hash") or ""),
            })
        last = attempts[-1]
        objects = [b.files[p] for p in sorted(task.get("inputs") or {}) if p in b.files]
        if task.get("params") not in (None, {}, []):
            objects.append(b.add(f"#args-{task['id']}", {
                "@type": "PropertyValue", "name": "arguments",
                "value": json.dumps(task["params"], default=str, sort_keys=True),
            }))
        props: dict[str, Any] = {
            "@type": "CreateAction", "name": f"Run of task {task['name']}",
            "description": _task_description(task, last),
            "startTime": fmt.iso(attempts[0].get("started_at")),
            "endTime": fmt.iso(last.get("ended_at")),
            "actionStatus": _status(str(task["state"])),
        }
        if task["state"] != "succeeded":
            props["error"] = _last_line(last.get("error") or task.get("error")) or task["state"]
        results = list(by_task.get(int(task["id"]), []))
        if task["state"] == "succeeded":
            results.append(b.add(f"#value-{_slug(str(task['key']))}", {
                "@type": "PropertyValue", "name": f"return value of {task['name']}",
                "value": f"stored in the Corral state store under key {task['key']}",
            }))
        actions.append(b.crate.add_action(
            tools[grp], identifier=f"#task-run-{task['id']}", object=objects or None,
            result=results or None,
            properties={k: v for k, v in props.items() if v is not None},
        ))
    return actions


def _container(b: _CrateBuilder, env: Mapping[str, Any]) -> Any | None:
    container = env.get("container")
    if not isinstance(container, Mapping) or not container.get("image"):
        return None
    sif = container.get("runtime") in ("apptainer", "singularity")
    kind = "SIFImage" if sif else "DockerImage"
    return b.add("#container", {
        "@type": "ContainerImage", "name": str(container["image"]),
        "additionalType": {"@id": f"https://w3id.org/ro/terms/workflow-run#{kind}"},
    })


def _raw_inputs(data: RunData, produced: set[str]) -> dict[str, str]:
    raw: dict[str, str] = {}
    for task in data.tasks:
        for path, digest in (task.get("inputs") or {}).items():
            if path not in produced:
                raw[path] = digest
    return raw


def _root(b: _CrateBuilder, license: str, author: Mapping[str, str] | None) -> Any | None:
    """Name, description, license and author of the crate; returns the author entity."""
    run, crate = b.data.run, b.crate
    crate.name = f"Corral run {b.data.run_id} of {run.get('pipeline')}"
    crate.description = (f"Workflow Run RO-Crate of the Corral run {b.data.run_id} of the "
                         f"pipeline {run.get('pipeline')} ({run.get('state')}), exported "
                         f"{_dt.date.today().isoformat()}.")
    if license.startswith(("http://", "https://")):
        crate.root_dataset["license"] = b.add(license, {
            "@type": "CreativeWork", "name": license.rstrip("/").rsplit("/", 1)[-1]})
    else:
        crate.root_dataset["license"] = license
    if not author:
        return None
    person = b.add(author.get("@id") or "#author",
                   {"@type": "Person", "name": author.get("name") or author.get("@id")})
    crate.root_dataset["author"] = person
    return person


def _files(b: _CrateBuilder, outputs: list[dict[str, Any]]) -> list[Any]:
    """Output and raw input files with their FormalParameters; returns the input entities."""
    tasks = {int(t["id"]): t for t in b.data.tasks}
    for row in outputs:
        entity = b.file(str(row["path"]), row.get("digest"), row.get("size"), "outputs")
        task = tasks.get(int(row["task_id"])) if row.get("task_id") is not None else None
        grp = str(task.get("grp") or task["name"]) if task else "output"
        b.example_of(entity, f"#output-{_slug(grp)}", f"files written by {grp}")
    inputs = []
    raw = _raw_inputs(b.data, {str(r["path"]) for r in outputs})
    for i, (path, digest) in enumerate(sorted(raw.items())):
        entity = b.file(path, digest, None, "inputs")
        b.example_of(entity, f"#input-{i}", Path(path).name)
        inputs.append(entity)
    return inputs


def _run_action(b: _CrateBuilder, wf: Any, objects: list[Any], results: list[Any],
                person: Any | None) -> Any:
    run, env = b.data.run, dict(b.data.run.get("environment") or {})
    props: dict[str, Any] = {
        "@type": "CreateAction", "name": f"Run {b.data.run_id} of {run.get('pipeline')}",
        "description": f"Executor {json.dumps(run.get('executor'), default=str)}; "
                       f"engine host {run.get('engine_host') or env.get('host') or '?'}",
        "startTime": fmt.iso(run.get("started_at") or run.get("created_at")),
        "endTime": fmt.iso(run.get("finished_at")),
        "actionStatus": _status(str(run.get("state"))),
        "containerImage": _container(b, env),
        "agent": person,
    }
    if run.get("state") != "succeeded":
        props["error"] = _last_line(run.get("error")) or str(run.get("state"))
    return b.crate.add_action(
        wf, identifier=f"#run-{_slug(b.data.run_id)}", object=objects or None,
        result=results or None, properties={k: v for k, v in props.items() if v is not None},
    )


def build_crate(store: Store, data: RunData, copy_files: bool = True,
                max_copy: int = MAX_COPY_BYTES, license: str = DEFAULT_LICENSE,
                author: Mapping[str, str] | None = None) -> Any:
    """The ``rocrate.rocrate.ROCrate`` of a run (not yet written)."""
    b = _CrateBuilder(data, store, copy_files, max_copy)
    person = _root(b, license, author)
    wf = b.workflow(dict(data.run.get("environment") or {}))
    b.profiles()
    formal, values = b.parameters()
    outputs = _outputs(store, data)
    inputs = _files(b, outputs)
    wf["input"] = [*formal, *[b.crate.get(f"#input-{i}") for i in range(len(inputs))]]
    wf["output"] = [e for e in b.crate.get_entities() if e.id.startswith("#output-")]
    main = _run_action(b, wf, [*inputs, *values],
                       [b.files[str(r["path"])] for r in outputs], person)
    b.crate.root_dataset["mentions"] = [main, *_task_actions(b, outputs)]
    _readme(b, len(outputs), len(inputs))
    _unwrap_singletons(b.crate)
    return b.crate


def _readme(b: _CrateBuilder, n_outputs: int, n_inputs: int) -> None:
    run = b.data.run
    ran = sum(1 for t in b.data.tasks if not t.get("cached") and b.data.task_attempts(t))
    text = (
        f"# Corral run {b.data.run_id} of {run.get('pipeline')}\n\n"
        f"A Workflow Run RO-Crate ({WFRUN_PROFILE}) exported by Corral.\n\n"
        f"- State: {run.get('state')}; started {fmt.iso(run.get('started_at'))}, "
        f"finished {fmt.iso(run.get('finished_at'))}\n"
        f"- Tasks: {len(b.data.tasks)} ({ran} ran, the others were reused from the cache)\n"
        f"- Files: {n_outputs} outputs under `outputs/`, {n_inputs} raw inputs under `inputs/` "
        "(large files and files not on the exporting machine are referenced by URI)\n"
        "- `workflow/` holds the pipeline source; `ro-crate-metadata.json` describes the run, "
        "one CreateAction per task, with parameters, timings and resource use.\n"
    )
    b.crate.add_file(source=io.StringIO(text), dest_path="README.md", properties={
        "name": "README", "encodingFormat": "text/markdown", "about": b.crate.root_dataset})


def _unwrap_singletons(crate: Any) -> None:
    """RO-Crate 1.1 recommends a single value rather than a one-element list."""
    for entity in crate.get_entities():
        raw = entity._jsonld
        for key, value in list(raw.items()):
            if key != "@type" and isinstance(value, list) and len(value) == 1:
                raw[key] = value[0]


def export_ro_crate(
    store: Store, run_id: str, dest_dir: str | Path, *, copy_files: bool = True,
    max_copy_bytes: int = MAX_COPY_BYTES, license: str = DEFAULT_LICENSE,
    author: Mapping[str, str] | None = None,
) -> Path:
    """Write the Workflow Run RO-Crate of a run into ``dest_dir`` (created; must be empty, or a
    path ending in ``.zip`` for a zipped crate). Returns the crate's path.

    ``copy_files`` copies output and raw input files up to ``max_copy_bytes`` each into the
    crate (others are referenced by ``file://`` URI). ``license`` is a URL or SPDX id for the
    crate's content; ``author`` (``{"@id": ORCID URL, "name": ...}``) becomes the crate's
    author and the run's agent."""
    require("rocrate.rocrate", "the RO-Crate export", None)
    dest = Path(dest_dir)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest} exists and is not an empty directory; choose a new directory "
                         "for the crate")
    data = load_run(store, run_id)
    crate = build_crate(store, data, copy_files, max_copy_bytes, license, author)
    try:
        if dest.suffix == ".zip":
            crate.write_zip(str(dest))
        else:
            crate.write(str(dest))
    except OSError as exc:
        raise UsageError(f"cannot write the crate to {dest}: {exc.strerror}; "
                         "choose another directory") from exc
    return dest


def crate_summary(dest: Path) -> dict[str, int]:
    """Entity counts by type of a written crate (used by the CLI to print a one-line summary)."""
    meta = json.loads((dest / "ro-crate-metadata.json").read_text())
    counts: dict[str, int] = {}
    for e in meta["@graph"]:
        types = e["@type"] if isinstance(e["@type"], list) else [e["@type"]]
        for tp in types:
            counts[tp] = counts.get(tp, 0) + 1
    return counts


from corral.report._prov import build_prov, export_prov  # noqa: E402  (one import site for the CLI)

__all__ = ["build_crate", "build_prov", "crate_summary", "export_prov", "export_ro_crate"]
