"""`corral lineage PATH`: how a file was made, back to the raw input files.

The newest artifact recorded for the path names the task (and attempt) that wrote it. From that
task the tree follows ``tasks.upstream`` (name -> key) to the upstream tasks of the same run; a
task reused from the cache is replaced by the task that actually computed the result
(:meth:`Store.producer_of_key`). Input files (``tasks.inputs``) that no task wrote are the raw
inputs, the leaves of the tree.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.text import Text
from rich.tree import Tree

from corral.errors import RunNotFound
from corral.report import units as fmt
from corral.report._data import attempt_row
from corral.store.rows import plain
from corral.store.store import Store

MAX_DEPTH = 200
SHOWN_CHILDREN = 20
"""The terminal tree shows this many upstream tasks per task; JSON has them all."""


@dataclass
class TaskNode:
    """A task that ran, with what it used."""

    name: str
    run_id: str
    key: str
    state: str
    code_hash: str | None
    params: Any
    host: str | None = None
    executor: str | None = None
    attempt_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    reused_by: str | None = None
    """Run that reused this result from the cache, when it differs from ``run_id``."""
    repeated: bool = False
    """Already shown elsewhere in the tree (shared ancestor); children left out."""
    upstream: list[TaskNode] = field(default_factory=list)
    inputs: list[FileNode] = field(default_factory=list)


@dataclass
class FileNode:
    path: str
    digest: str | None
    size: int | None = None
    raw: bool = False
    """A raw input: no recorded task wrote this content."""
    note: str | None = None
    produced_by: TaskNode | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _Walker:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs: dict[str, dict[str, dict[str, Any]]] = {}
        self.seen: set[int] = set()

    def run_tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        if run_id not in self.runs:
            self.runs[run_id] = {r["name"]: plain(r) for r in self.store.tasks(run_id)}
        return self.runs[run_id]

    def producer(self, row: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """The row that computed ``row``'s result, and the run that reused it (if any)."""
        if not row.get("cached"):
            return row, None
        source = self.store.producer_of_key(str(row["key"]))
        return (source, str(row["run_id"])) if source else (row, None)

    def task(self, row: dict[str, Any], attempt_id: str | None, depth: int) -> TaskNode:
        row, reused_by = self.producer(row)
        node = TaskNode(
            name=str(row["name"]), run_id=str(row["run_id"]), key=str(row["key"]),
            state=str(row["state"]), code_hash=row.get("code_hash"), params=row.get("params"),
            reused_by=reused_by,
        )
        self._attempt(node, row, attempt_id)
        if int(row["id"]) in self.seen or depth >= MAX_DEPTH:
            node.repeated = True
            return node
        self.seen.add(int(row["id"]))
        tasks = self.run_tasks(node.run_id)
        for name, key in (row.get("upstream") or {}).items():
            up = tasks.get(name)
            if up is None or up["key"] != key:
                up = self.store.producer_of_key(str(key))
            if up is not None:
                node.upstream.append(self.task(up, None, depth + 1))
        for path, digest in sorted((row.get("inputs") or {}).items()):
            node.inputs.append(self.input_file(path, digest, depth + 1))
        return node

    def _attempt(self, node: TaskNode, row: Mapping[str, Any], attempt_id: str | None) -> None:
        attempt = attempt_row(self.store, attempt_id) if attempt_id else None
        if attempt is None:
            rows = self.store.attempts(node.run_id, int(row["id"]))
            attempt = plain(rows[-1]) if rows else None
        if attempt is not None:
            node.attempt_id = str(attempt["id"])
            node.host, node.executor = attempt.get("host"), attempt.get("executor")
            node.started_at, node.ended_at = attempt.get("started_at"), attempt.get("ended_at")
        else:
            node.started_at, node.ended_at = row.get("started_at"), row.get("finished_at")

    def input_file(self, path: str, digest: str, depth: int) -> FileNode:
        art = self.store.file_artifact(path, digest)
        if art is None or art["task_id"] is None:
            return FileNode(path, digest, raw=True)
        row = self.store.task_by_id(int(art["task_id"]))
        made = self.task(row, art["attempt_id"], depth) if row else None
        return FileNode(path, digest, int(art["size"]), produced_by=made)


def _disk_note(path: Path, digest: str) -> str | None:
    if not path.exists():
        return "the file no longer exists on disk"
    try:
        from corral.hashing import file_digest

        if file_digest(path) != digest:
            return "the file changed on disk after it was produced"
    except OSError as exc:
        return f"cannot read the file to check it: {exc.strerror}"
    return None


def lineage(store: Store, path: str | Path, check_disk: bool = True) -> FileNode:
    """The provenance tree of a file written by a task: producing task, its upstream tasks, and
    the raw input files at the leaves. ``check_disk`` compares the file's current digest."""
    p = Path(path)
    arts = [a for a in store.artifacts_for_path(p) if a.get("task_id") is not None]
    if not arts:
        raise RunNotFound(
            f"no task of any run wrote {p.resolve()}; lineage follows files that tasks declare "
            "as outputs (check the path, or run the pipeline first)"
        )
    art = arts[0]
    walker = _Walker(store)
    row = store.task_by_id(int(art["task_id"]))
    made = walker.task(row, art.get("attempt_id"), 0) if row else None
    note = _disk_note(p.resolve(), str(art["digest"])) if check_disk else None
    return FileNode(str(art["path"]), str(art["digest"]), int(art["size"]), note=note,
                    produced_by=made)


# ---------------------------------------------------------------------------- rendering


def _task_label(node: TaskNode) -> Text:
    label = Text.assemble((node.name, "bold cyan"), "  ", (f"run {node.run_id}", "dim"))
    if node.repeated:
        label.append("  (shown above)", style="dim italic")
        return label
    bits = [f"code {str(node.code_hash or '-')[:12]}"]
    if node.host:
        bits.append(f"on {node.host}")
    if node.ended_at:
        bits.append(fmt.timestamp(node.ended_at))
    if node.reused_by:
        bits.append(f"reused by run {node.reused_by}")
    label.append("  " + " · ".join(bits))
    if node.params not in (None, {}, []):
        params = json.dumps(node.params, sort_keys=True, default=str)
        label.append("\n" + (params if len(params) <= 100 else params[:99] + "…"), style="dim")
    return label


def _file_label(node: FileNode) -> Text:
    label = Text(node.path, style="bold" if not node.raw else "green")
    extra = ["raw input"] if node.raw else []
    if node.size is not None:
        extra.append(fmt.size(node.size))
    if node.digest:
        extra.append(node.digest[:12])
    label.append("  " + " · ".join(extra), style="dim")
    if node.note:
        label.append(f"  ({node.note})", style="yellow")
    return label


def _add_task(tree: Tree, node: TaskNode) -> None:
    branch = tree.add(_task_label(node))
    for f in node.inputs:
        _add_file(branch, f)
    for up in node.upstream[:SHOWN_CHILDREN]:
        _add_task(branch, up)
    hidden = len(node.upstream) - SHOWN_CHILDREN
    if hidden > 0:
        branch.add(Text(f"… and {hidden:,} more upstream tasks (see --json)", style="dim"))


def _add_file(tree: Tree, node: FileNode) -> None:
    branch = tree.add(_file_label(node))
    if node.produced_by is not None:
        _add_task(branch, node.produced_by)


def lineage_tree(root: FileNode) -> Tree:
    """A rich Tree of :func:`lineage`'s result."""
    tree = Tree(_file_label(root))
    if root.produced_by is not None:
        _add_task(tree, root.produced_by)
    return tree
