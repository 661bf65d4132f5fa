"""The code part of a Python task's cache key: everything in the user's own code it can reach.

Starting from the task's function, references are followed through the user's own code (the
pipeline file and local modules, i.e. modules outside the standard library, site-packages and
Corral): the functions and **classes** it names (a class with all its methods, class-level
statements and its user-defined base classes), user-defined decorators, names in default
arguments, closure variables, and the **module-level values** read by any of them. Each reached
thing is a *part* with its own digest:

- functions and classes by the AST of their source (comments and formatting do not matter);
- values by value when :func:`corral.hashing.hash_value` can hash their type, otherwise by the
  AST of the module-level statements that bind the name (whose own references are followed);
- local modules used as modules (``import helpers``) or through their functions
  (``from helpers import f``) by the content of their file;
- a name Corral cannot tell about (not defined when the key is computed, a closure variable or
  a module value it can neither hash nor find the binding statement of) by a digest that is new
  in every process: the task reruns every time, and ``corral why`` says which name it was.

References are followed :data:`MAX_REACH` steps from the task (task -> helper -> ... four
levels of helpers); base classes are part of their class and cost no step.

The digest keeps the form it had before classes and values were followed (the function, its
same-module helpers two levels deep and local modules' files) and adds the other parts only when
there are any, so tasks that reach nothing new keep their keys across this change.
"""

from __future__ import annotations

import ast
import builtins
import dis
import functools
import importlib.util
import inspect
import os
import sys
import sysconfig
import textwrap
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.hashing import digest_bytes, file_digest, hash_value, new_hasher

if TYPE_CHECKING:
    from corral.graph import Node

MAX_REACH = 4
"""How many references away from a task its key follows the user's code."""
LEGACY_DEPTH = 2
"""The depth of same-module helpers hashed before classes and values were followed."""
PART_DIGEST = 16
"""Hex digits of a part's digest kept for ``corral why``."""

_STD_PREFIXES = tuple(
    {os.path.dirname(os.__file__), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)
_BUILTINS = frozenset(vars(builtins))


@dataclass(frozen=True)
class CodeReach:
    digest: str
    """The code part of the task's key."""
    parts: dict[str, str]
    """What the task reaches, e.g. ``{"class Model": digest, "value TABLE": digest}``."""


_CODE_CACHE: dict[Any, CodeReach] = {}


def code_hash(func: Callable[..., Any]) -> str:
    """Hash of a function's code and of the user's code and module values it reaches."""
    return analyse(func).digest


def code_parts(func: Callable[..., Any]) -> dict[str, str]:
    """The parts of :func:`code_hash` with short digests, for ``corral why``."""
    return {name: digest[:PART_DIGEST] for name, digest in analyse(func).parts.items()}


def analyse(func: Callable[..., Any]) -> CodeReach:
    cached = _CODE_CACHE.get(func)
    if cached is not None:
        return cached
    legacy = _Legacy()
    digest = legacy.hash(func, LEGACY_DEPTH)
    if not isinstance(func, types.FunctionType) or not _is_user(func.__module__):
        reach = CodeReach(digest, {f"function {getattr(func, '__qualname__', repr(func))}": digest})
    else:
        walk = _Walk(func, legacy)
        walk.function(func, MAX_REACH)
        extra = sorted((n, d) for n, d in walk.parts.items() if n not in walk.covered)
        if extra:
            h = new_hasher()
            h.update(b"reach:" + digest.encode())
            for name, part in extra:
                h.update(b"\0" + name.encode() + b"=" + part.encode())
            digest = str(h.hexdigest())
        reach = CodeReach(digest, walk.parts)
    try:
        _CODE_CACHE[func] = reach
    except TypeError:
        pass
    return reach


# ---------------------------------------------------------------------------- user code


def _module_file(module_name: str) -> str | None:
    """The source file of one of the user's own modules, None for anything else."""
    if module_name.partition(".")[0] == "corral":
        return None
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if path and path.endswith(".py") and not path.startswith(_STD_PREFIXES):
        return str(path)
    return None


def _user_file(module_name: str | None) -> str | None:
    return _module_file(module_name) if isinstance(module_name, str) else None


def _is_user(module_name: str | None) -> bool:
    """Whether code of this module is the user's: a local module, or an interactive session."""
    return module_name == "__main__" or _user_file(module_name) is not None


def _source_ast(obj: Any) -> str:
    """The AST of a function's source without its decorators (they carry options)."""
    try:
        src = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        if code is None:
            return repr(obj)
        return repr((code.co_code, code.co_consts, code.co_names))
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            node.decorator_list = []  # decorators carry options, hashed separately
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def _definition(obj: Any) -> ast.stmt | None:
    """The ``def`` or ``class`` statement of a function or class, None without source."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(obj)))
    except Exception:  # no source (OSError, TypeError), or inspect failing on odd objects
        return None
    first = tree.body[0] if tree.body else None
    return first if isinstance(first, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) else None


@functools.lru_cache(maxsize=4096)
def _global_loads(code: types.CodeType) -> tuple[frozenset[str], frozenset[str]]:
    """Names a code object (and the code nested in it) reads as globals: those that must be
    globals (``LOAD_GLOBAL``) and those that may be (``LOAD_NAME`` of class bodies)."""
    strict, loose = set(), set()
    for ins in dis.get_instructions(code):
        if ins.opname == "LOAD_GLOBAL":
            strict.add(str(ins.argval))
        elif ins.opname in ("LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"):
            loose.add(str(ins.argval))
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            s, lo = _global_loads(const)
            strict |= s
            loose |= lo
    return frozenset(strict), frozenset(loose - strict)


def _loaded_names(*nodes: ast.AST | None) -> set[str]:
    return {n.id for node in nodes if node is not None for n in ast.walk(node)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _root_name(node: ast.expr) -> str | None:
    """``deco`` of ``@deco``, ``@deco(1)`` or ``@pkg.deco``."""
    while isinstance(node, ast.Call | ast.Attribute):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_corral(obj: Any) -> bool:
    try:
        name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    except Exception:  # any object may define __getattr__
        return False
    return isinstance(name, str) and name.partition(".")[0] == "corral"


# ---------------------------------------------------------------------------- module statements


@functools.lru_cache(maxsize=256)
def _parse_file(path: str, _mtime: int, _size: int) -> ast.Module | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return ast.parse(fh.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _module_tree(path: str) -> ast.Module | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _parse_file(path, st.st_mtime_ns, st.st_size)


def _binds(stmt: ast.stmt, name: str) -> bool:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return any((a.asname or a.name.partition(".")[0]) == name for a in stmt.names)
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return stmt.name == name
    if isinstance(stmt, ast.Assign):
        targets: list[ast.expr] = list(stmt.targets)
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        targets = [stmt.target]
    elif isinstance(stmt, ast.For | ast.AsyncFor):
        targets = [stmt.target]
    elif isinstance(stmt, ast.With | ast.AsyncWith):
        targets = [i.optional_vars for i in stmt.items if i.optional_vars is not None]
    else:
        return False
    return any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t))


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, also inside ``if``, ``try``, ``with`` and loops (not in defs)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for attr in ("body", "orelse", "finalbody"):
            yield from _statements(getattr(stmt, attr, None) or [])
        for handler in getattr(stmt, "handlers", None) or []:
            yield from _statements(handler.body)


def binding_statements(module_name: str, name: str) -> list[ast.stmt]:
    """The module-level statements of a user module that bind ``name``."""
    path = _user_file(module_name)
    tree = _module_tree(path) if path else None
    if tree is None:
        return []
    out = []
    for stmt in _statements(tree.body):
        if _binds(stmt, name):
            if isinstance(stmt, ast.For | ast.AsyncFor | ast.With | ast.AsyncWith):
                stmt = type(stmt)(**{**vars(stmt), "body": []})  # the header, not the body
            out.append(stmt)
    return out


def _imported_module(stmt: ast.ImportFrom, module_name: str) -> str | None:
    package = getattr(sys.modules.get(module_name), "__package__", None) or ""
    try:
        return importlib.util.resolve_name("." * stmt.level + (stmt.module or ""), package)
    except (ImportError, ValueError):
        return None


# ---------------------------------------------------------------------------- the old digest


@dataclass
class _Legacy:
    """The digest as it was before classes and values were followed, and what it covers."""

    functions: set[int] = field(default_factory=set)
    files: set[str] = field(default_factory=set)

    def hash(self, func: Any, depth: int) -> str:
        for f in (func, _unwrap(func)):
            self.functions.add(id(f))
        h = new_hasher()
        h.update(getattr(func, "__qualname__", repr(func)).encode())
        h.update(_source_ast(func).encode())
        if isinstance(func, types.FunctionType):
            for helper in sorted(self._helpers(func, depth), key=lambda f: f.__qualname__):
                h.update(b"helper:" + self.hash(helper, depth - 1).encode())
            for path in _local_module_files(func):
                try:
                    h.update(b"module:" + file_digest(path).encode())
                except OSError:
                    continue
                self.files.add(path)
        return str(h.hexdigest())

    @staticmethod
    def _helpers(func: types.FunctionType, depth: int) -> list[types.FunctionType]:
        """Module-level functions of the same module that ``func`` refers to by name."""
        if depth <= 0:
            return []
        found = []
        for name in _names(func.__code__):
            target = func.__globals__.get(name)
            target = getattr(target, "__wrapped__", target)
            if (isinstance(target, types.FunctionType) and target is not func
                    and target.__module__ == func.__module__):
                found.append(target)
        return found


def _names(code: types.CodeType) -> set[str]:
    """Names (global or attribute) used by a code object and the code nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _local_module_files(func: types.FunctionType) -> list[str]:
    """Source files of the user's own modules that ``func`` uses as modules (``import m``) or
    through their functions (``from m import f``)."""
    files: set[str] = set()
    own = getattr(sys.modules.get(func.__module__), "__file__", None)
    for name in _names(func.__code__):
        target = func.__globals__.get(name)
        if isinstance(target, types.ModuleType):
            module_name, path = target.__name__, getattr(target, "__file__", None)
        elif isinstance(target, types.FunctionType):
            module_name = target.__module__
            path = getattr(sys.modules.get(module_name), "__file__", None)
        else:
            continue
        if module_name.partition(".")[0] == "corral":
            continue
        if path and path != own and path.endswith(".py") and not path.startswith(_STD_PREFIXES):
            files.add(path)
    return sorted(files)


def _unwrap(func: Any) -> Any:
    try:
        return inspect.unwrap(func)
    except ValueError:
        return func


# ---------------------------------------------------------------------------- the walk


class _Walk:
    """Follows a task's references through the user's code, collecting its parts."""

    def __init__(self, root: types.FunctionType, legacy: _Legacy) -> None:
        self.root_module = root.__module__
        self.legacy = legacy
        self.parts: dict[str, str] = {}
        self.covered: set[str] = set()
        """Parts the old digest already covers (so they do not change the key)."""
        self.seen: dict[Any, int] = {}

    def _first(self, key: Any, remaining: int) -> bool:
        """Whether ``key`` is new or now reached with more steps left."""
        if isinstance(key, type | types.FunctionType):
            key = id(key)
        if self.seen.get(key, -1) >= remaining:
            return False
        self.seen[key] = remaining
        return True

    def _label(self, module: str, name: str) -> str:
        return name if module == self.root_module else f"{module}.{name}"

    def _add(self, name: str, digest: str, covered: bool = False) -> None:
        self.parts[name] = digest
        if covered:
            self.covered.add(name)

    def _unknown(self, label: str) -> None:
        self._add(f"unknown {label}", "?" + uuid.uuid4().hex)

    def _covered_file(self, module: str) -> bool:
        return _user_file(module) in self.legacy.files

    # ------------------------------------------------------------------ functions and classes

    def function(self, fn: types.FunctionType, remaining: int) -> None:
        fn = _unwrap(fn)
        if not isinstance(fn, types.FunctionType) or not self._first(fn, remaining):
            return
        module = fn.__module__ or ""
        covered = id(fn) in self.legacy.functions or self._covered_file(module)
        name = f"function {self._label(module, fn.__qualname__)}"
        self._add(name, digest_bytes(_source_ast(fn).encode()), covered)
        if module != self.root_module and _user_file(module):
            self.module(module)  # as before: a local module's function is hashed with its file
        if remaining <= 0:
            return
        strict, _ = _global_loads(fn.__code__)
        node = _definition(fn)
        extra: set[str] = set()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            extra = self._decorator_names(node.decorator_list, fn.__globals__)
            extra |= _loaded_names(*node.args.defaults, *node.args.kw_defaults)
        for ref in sorted(strict | extra):
            self.global_name(ref, fn.__globals__, module, remaining - 1, strict=ref in strict)
        cells = fn.__closure__ or ()
        for var, cell in zip(fn.__code__.co_freevars, cells, strict=False):
            label = f"{var} of {fn.__qualname__}"
            try:
                value = cell.cell_contents
            except ValueError:
                self._unknown(label)
                continue
            self.value(label, value, module, remaining - 1, closure=True)

    def _decorator_names(self, decorators: list[ast.expr], globs: dict[str, Any]) -> set[str]:
        """Names in the user's own decorators (Corral's, like ``@task(retries=2)``, carry
        options that are not part of the code)."""
        out: set[str] = set()
        for deco in decorators:
            root = _root_name(deco)
            if root is not None and _is_corral(globs.get(root)):
                continue
            out |= _loaded_names(deco)
        return out

    def cls(self, cls: type, remaining: int) -> None:
        if not self._first(cls, remaining):
            return
        module = cls.__module__
        node = _definition(cls)
        if not isinstance(node, ast.ClassDef):  # made by a call (namedtuple, ...): its statement
            self.value(cls.__qualname__, cls, module, remaining, statement_only=True)
            return
        label = f"class {self._label(module, cls.__qualname__)}"
        self._add(label, digest_bytes(ast.dump(node, annotate_fields=False).encode()),
                  self._covered_file(module))
        for base in cls.__mro__[1:]:
            if _is_user(base.__module__):
                self.cls(base, remaining)  # part of the class: no step
        if remaining <= 0:
            return
        globs = vars(sys.modules[module]) if module in sys.modules else {}
        for ref in sorted(_class_level_names(node)):
            self.global_name(ref, globs, module, remaining - 1, strict=False)
        for method in _methods(cls):
            strict, _ = _global_loads(method.__code__)
            for ref in sorted(strict):
                self.global_name(ref, method.__globals__, module, remaining - 1, strict=True)

    def module(self, module_name: str) -> None:
        path = _user_file(module_name)
        if path is None or not self._first(("module", module_name), 0):
            return
        try:
            digest = file_digest(path)
        except OSError:
            self._unknown(f"module {module_name}")
            return
        self._add(f"module {module_name}", digest, path in self.legacy.files)

    # ------------------------------------------------------------------ names and values

    def global_name(self, name: str, globs: dict[str, Any], module: str, remaining: int,
                    strict: bool) -> None:
        """A name read from the globals of ``module``."""
        if name in globs:
            self.value(name, globs[name], module, remaining)
        elif strict and name not in _BUILTINS:
            self._unknown(self._label(module, name))

    def value(self, name: str, value: Any, module: str, remaining: int, closure: bool = False,
              statement_only: bool = False) -> None:
        """What a name stands for: code to follow, a module, or a value."""
        target = value if statement_only else _code_of(value)
        if isinstance(target, types.ModuleType):
            if target.__name__ != self.root_module:
                self.module(target.__name__)
            return
        if isinstance(target, types.FunctionType) or (isinstance(target, type)
                                                      and not statement_only):
            if _is_user(target.__module__):
                if isinstance(target, type):
                    self.cls(target, remaining)
                else:
                    self.function(target, remaining)
            return
        if _is_corral(value) or (inspect.isroutine(value)
                                 and not _is_user(getattr(value, "__module__", None))):
            return
        if _is_user(type(value).__module__):
            self.cls(type(value), remaining)
        label = name if closure else self._label(module, name)
        if not self._first(("value", module, name, closure), remaining):
            return
        kind = "closure" if closure else "value"
        if not statement_only:
            try:
                self._add(f"{kind} {label}", hash_value(value))
                return
            except Exception:  # no hasher (HashingError), a value containing itself, ...
                pass  # then by the statements that bind it
        if closure:
            self._unknown(label)
            return
        self._statements(label, module, name, remaining)

    def _statements(self, label: str, module: str, name: str, remaining: int) -> None:
        """A module value Corral cannot hash: the statements that bind it, followed."""
        stmts = binding_statements(module, name)
        if not stmts:
            self._unknown(label)
            return
        dump = "\n".join(ast.dump(s, annotate_fields=False) for s in stmts)
        self._add(f"value {label}", digest_bytes(dump.encode()))
        if remaining <= 0:
            return
        globs = vars(sys.modules[module]) if module in sys.modules else {}
        for stmt in stmts:
            if isinstance(stmt, ast.ImportFrom):
                source = _imported_module(stmt, module)
                if source and source != self.root_module:
                    self.module(source)
        for ref in sorted(_loaded_names(*stmts) - {name}):
            self.global_name(ref, globs, module, remaining - 1, strict=False)


def _code_of(value: Any) -> Any:
    """The function behind a task or a ``functools.wraps`` wrapper, else ``value``."""
    if isinstance(value, type | types.ModuleType):
        return value
    try:
        wrapped = getattr(value, "__wrapped__", None)
    except Exception:  # any object may define __getattr__
        return value
    return _unwrap(wrapped) if wrapped is not None else value


def _class_level_names(node: ast.ClassDef) -> set[str]:
    """Names read by a class statement outside its methods' bodies: bases, decorators, class
    attributes, and the methods' decorators and default arguments."""
    names = _loaded_names(*node.bases, *node.keywords, *node.decorator_list)
    for stmt in node.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            names |= _loaded_names(*stmt.decorator_list, *stmt.args.defaults,
                                   *stmt.args.kw_defaults)
        elif isinstance(stmt, ast.ClassDef):
            names |= _class_level_names(stmt)
        else:
            names |= _loaded_names(stmt)
    return names


def _methods(cls: type) -> Iterator[types.FunctionType]:
    """The functions defined in a class body and its nested classes (not those generated by
    ``dataclass`` and the like, whose code comes from a string)."""
    for attr in vars(cls).values():
        candidates: list[Any] = [attr]
        if isinstance(attr, staticmethod | classmethod):
            candidates = [attr.__func__]
        elif isinstance(attr, property):
            candidates = [attr.fget, attr.fset, attr.fdel]
        elif isinstance(attr, functools.cached_property):
            candidates = [attr.func]
        elif isinstance(attr, type) and attr.__qualname__.startswith(cls.__qualname__ + "."):
            candidates = list(_methods(attr))
        for fn in candidates:
            fn = _unwrap(fn)
            if isinstance(fn, types.FunctionType) and not fn.__code__.co_filename.startswith("<"):
                yield fn


def recorded_parts(nodes: Iterable[Node]) -> dict[str, dict[str, str]]:
    """What the code keys of a graph's Python tasks cover, ``{task.code: {part: digest}}`` with
    each task definition once: recorded with the run so that ``corral why`` can name what
    changed."""
    out: dict[str, dict[str, str]] = {}
    for node in nodes:
        task = node.task if node.task is not None else node.expand.task if node.expand else None
        if task is not None and task.code not in out:
            out[task.code] = code_parts(task.func)
    return out
