"""Loading a pipeline file: importing it as a module, finding its pipelines, and noting the
installed packages it imported (local workers import them ahead of the first task)."""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import cloudpickle

from corral.errors import CorralError, UsageError
from corral.hashing import hash_value
from corral.model import Pipeline


def load_pipeline(source: str | Path, name: str | None = None) -> Pipeline[Any, Any]:
    """Import a pipeline file and return its pipeline (by name when it has several)."""
    path = Path(source).resolve()
    if not path.is_file():
        raise UsageError(f"pipeline file {str(source)!r} does not exist; check the path")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    pp = os.environ.get("PYTHONPATH", "")
    if folder not in pp.split(os.pathsep):
        os.environ["PYTHONPATH"] = folder + (os.pathsep + pp if pp else "")
    mod_name = f"corral_pipeline_{path.stem}_{hash_value(str(path))[:8]}"
    module = sys.modules.get(mod_name)
    imports: frozenset[str] | None = None
    if module is None:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        before = set(sys.modules)
        try:
            _execute_source(path, module)
        except CorralError:
            raise
        except Exception as exc:
            del sys.modules[mod_name]
            raise UsageError(
                f"importing {path.name} failed: {type(exc).__name__}: {exc}; fix the file"
            ) from exc
        cloudpickle.register_pickle_by_value(module)
        imports = installed_packages(set(sys.modules) - before)
    found = {p.name: p for p in vars(module).values() if isinstance(p, Pipeline)}
    for p in found.values():
        p.source_file = str(path)
        if imports is not None:
            p.imports = imports
    return _choose(path, found, name)


def _execute_source(path: Path, module: Any) -> None:
    """Run the pipeline file's source in ``module``, compiled from the file as it is now.
    Not through the import system's bytecode cache: that one trusts a ``.pyc`` whose source
    has the same size and the same modification second, so a file edited within a second of
    its last run (by a script, a test, an editor saving twice) ran its old code, while the
    cache keys, computed from the source text, said it had changed: a rerun with stale code.
    (And no ``__pycache__`` is written into the user's folder.)"""
    code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    exec(code, module.__dict__)  # (the user's own pipeline file)


def _choose(path: Path, found: dict[str, Pipeline[Any, Any]],
            name: str | None) -> Pipeline[Any, Any]:
    if name is not None:
        if name not in found:
            raise UsageError(
                f"{path.name} has no pipeline {name!r}; it defines: {', '.join(found) or 'none'}"
            )
        return found[name]
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise UsageError(f"{path.name} defines no @pipeline function; decorate one with @pipeline")
    raise UsageError(
        f"{path.name} defines several pipelines ({', '.join(found)}); name one after the file"
    )


def installed_packages(names: set[str]) -> frozenset[str]:
    """The installed third-party top-level packages (numpy, pandas ...) among module ``names``.
    The user's own modules are left out: workers must import their current source."""
    installed = tuple({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    found: set[str] = set()
    for name in names:
        top = name.partition(".")[0]
        if not top or top.startswith(("_", "corral")) or top in sys.stdlib_module_names:
            continue
        path = getattr(sys.modules.get(top), "__file__", None) or ""
        if path.startswith(installed):
            found.add(top)
    return frozenset(found)
