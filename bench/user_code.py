"""Which source files make up a custom `module:factory` model: its module and the user modules it
imports, directly or through each other, found without importing (running) any of them.

Used by the weight cache (bench.cache): editing any of these files must change the cache key.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import logging
import site
import sys
import sysconfig
from importlib.machinery import ModuleSpec
from pathlib import Path

log = logging.getLogger("edgebench")

MAX_USER_MODULES = 500  # a bound on the walk; a larger tree is hashed in part, with a warning


def find_spec_without_import(name: str) -> ModuleSpec | None:
    """The spec of module `name` like `importlib.util.find_spec`, but a dotted name is looked up in
    its parent's folders instead of importing the parent (find_spec would run every parent package,
    even one the model never imports, e.g. under `if TYPE_CHECKING`)."""
    if name in sys.modules:  # already imported: what runs is what was imported
        return getattr(sys.modules[name], "__spec__", None)
    parts = name.split(".")
    try:
        spec = importlib.machinery.PathFinder.find_spec(parts[0]) or importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None  # the parent is a plain module: `parent.name` is an attribute, not a module
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:i + 1]), list(spec.submodule_search_locations))
    return spec


def source_file(spec: ModuleSpec | None) -> Path | None:
    """The module's .py file (None for a namespace package, a built-in or a compiled extension)."""
    if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
        return None
    path = Path(spec.origin)
    return path if path.is_file() else None


def local_modules(root: str) -> set[str]:
    """`root` and the modules it imports, transitively, that are user code: their files (or a
    namespace package's folders) lie outside the Python installation and its site-packages. Every
    parent package of a module is included: importing `a.b.c` runs a/__init__.py and a/b/__init__.py."""
    installed = _installed_roots()
    found: set[str] = set()
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.partition(".")[0]
        # the top-level name first: finding it imports nothing, and an installed package stops the walk
        if name != root and top != name and not _is_local(find_spec_without_import(top), installed):
            continue
        spec = find_spec_without_import(name)
        if name != root and not _is_local(spec, installed):
            continue
        if len(found) >= MAX_USER_MODULES:
            log.warning("cache key: %s imports more than %d modules of its own; the rest are not hashed "
                        "(clear results/.cache/ after editing them)", root, MAX_USER_MODULES)
            break
        found.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        source = source_file(spec)
        if source is not None:
            todo += imported_names(name, source)
    return found


def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    return tuple(Path(r).resolve() for r in roots)


def _is_local(spec: ModuleSpec | None, installed: tuple[Path, ...]) -> bool:
    if spec is None:
        return False
    source = source_file(spec)
    places = [source] if source is not None else [Path(p) for p in spec.submodule_search_locations or []]
    return bool(places) and not any(p.resolve().is_relative_to(r) for p in places for r in installed)


def read_python(source: Path) -> tuple[str, ast.Module | None]:
    """A file's text (undecodable bytes replaced) and its syntax tree (None when it is not Python)."""
    text = source.read_bytes().decode("utf-8", errors="replace")
    try:
        return text, ast.parse(text)
    except (SyntaxError, ValueError):
        return text, None


def imported_names(name: str, source: Path) -> list[str]:
    """Every module an `import` or `from ... import` in `source` may name, relative ones resolved
    (`from pkg import sub` may import a submodule, so `pkg.sub` is a candidate too)."""
    tree = read_python(source)[1]
    if tree is None:
        return []
    package = name if source.name == "__init__.py" else name.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            except (ImportError, ValueError):  # a relative import beyond the top-level package
                continue
            if base:
                names += [base] + [f"{base}.{alias.name}" for alias in node.names if alias.name != "*"]
    return names
