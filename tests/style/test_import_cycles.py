"""No runtime import circle in src/: the modules of corral, linked by the imports that run when a
module is imported (module level, class bodies, try/if blocks), form no cycle. Imports inside
functions and under ``if TYPE_CHECKING:`` do not count (they run later, or never); neither does
the implicit import of a module's parent package. import-linter's "acyclic" contract
(pyproject.toml) is stricter: it counts every import, but only between siblings."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    where: str  # path:line of the import statement


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``src`` by dotted name (a package by its own name)."""
    names: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements run when a module body runs: not in functions, not under
    ``if TYPE_CHECKING:`` (its ``else:`` does run)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for stmt in body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            found.append(stmt)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                found += _runtime_imports(stmt.body)
            found += _runtime_imports(stmt.orelse)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                found += _runtime_imports(block)
        elif isinstance(stmt, ast.ClassDef | ast.With | ast.AsyncWith | ast.For | ast.While):
            found += _runtime_imports(stmt.body)
    return found


def runtime_edges(src: Path, package: str) -> list[Edge]:
    """The runtime imports between the modules of ``package``."""
    modules = module_names(src, package)
    edges: list[Edge] = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for stmt in _runtime_imports(ast.parse(path.read_text(), str(path)).body):
            where = f"{path.relative_to(src.parent)}:{stmt.lineno}"
            targets: list[str] = []
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            else:
                base = stmt.module or ""
                if stmt.level:
                    anchor = name.split(".")
                    anchor = anchor[: len(anchor) - stmt.level + (1 if is_package else 0)]
                    base = ".".join([*anchor, *([base] if base else [])])
                for alias in stmt.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # `import a.b.c` binds a module that exists; the nearest one we know of
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                edge = Edge(name, target, where)
                if target and target != name and edge not in edges:
                    edges.append(edge)
    return edges


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(found: list[list[str]], edges: list[Edge]) -> str:
    lines = []
    for component in found:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        lines += [f"  {e.importer} -> {e.imported} ({e.where})" for e in edges
                  if e.importer in members and e.imported in members]
    return "\n".join(lines)


def test_no_runtime_import_cycle_in_src() -> None:
    edges = runtime_edges(SRC, "corral")
    assert len({e.importer for e in edges}) > 50, "the scan found too few modules"
    found = cycles(edges)
    assert not found, "runtime import cycles in src/corral:\n" + describe(found, edges)


def test_detector_counts_runtime_imports_only(tmp_path: Path) -> None:
    """The scan itself: a cycle through module-level, relative and class-body imports is found;
    imports in functions and under TYPE_CHECKING are not counted."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("from .sub import b\nA = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("class B:\n    from ..c import C\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "try:\n    import pkg.a\nexcept ImportError:\n    pass\nC = 1\n")
    (pkg / "lazy.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
        "def f() -> None:\n    from pkg import d\n")
    (pkg / "d.py").write_text("import pkg.lazy\n")
    edges = runtime_edges(tmp_path, "pkg")
    assert cycles(edges) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert "pkg/sub/b.py:2" in describe(cycles(edges), edges)
    assert not any(e.importer == "pkg.lazy" for e in edges)
