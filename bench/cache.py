"""Content-addressed cache of trained weights: the key is a hash of everything that determines them."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import site
import sysconfig
from pathlib import Path
from typing import Any, Iterable

# The code that determines trained weights: how batches are drawn, the models, the fit loop. A
# change to any of these files changes the cache keys, so an edited (or upgraded) edgebench never
# reuses weights that the code it runs would not produce.
TRAINING_CODE = ("bench.data", "bench.models", "bench.train", "bench.zoo", "compress.train")
PASS_CODE = TRAINING_CODE + ("bench.variants", "compress.chain", "compress.context", "compress.distill",
                             "compress.finetune", "compress.prune", "compress.registry", "compress.reshape")


def cache_key(parts: dict[str, Any]) -> str:
    """A stable 16-hex-digit hash of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path, kind: str, key: str, suffix: str = ".pt") -> Path:
    path = Path(cache_dir) / kind / f"{key}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def library_versions() -> dict[str, str]:
    """The libraries whose version can change trained weights: torch's kernels, torchvision's zoo
    models, NumPy's random streams (batch order, augmentation)."""
    import numpy
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__}


def code_digest(modules: Iterable[str], model: str = "") -> str:
    """A 16-hex-digit hash of the source files of `modules`, plus the module of a custom
    `module:factory` model and the user modules it imports, directly or through each other: they
    are as much part of the weights as the zoo's files. Installed libraries (standard library,
    site-packages) are left out: their versions are keyed by `library_versions` or not at all."""
    names = set(modules)
    if ":" in model:
        names |= _local_modules(model.partition(":")[0])
    digest = hashlib.sha256()
    for name in sorted(names):
        source = _source_file(name)
        digest.update(name.encode() + b"\0")
        digest.update(_code(source) if source is not None else b"<no source file>")
    return digest.hexdigest()[:16]


def _source_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # noqa: BLE001 - finding `pkg.sub` imports pkg, whose code may raise anything (an import
        return None    # the model never runs, e.g. under `if TYPE_CHECKING`); such a module is not hashed
    origin = Path(spec.origin) if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen") else None
    return origin if origin is not None and origin.is_file() else None


def _installed_roots() -> tuple[Path, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    return tuple(Path(r).resolve() for r in roots)


def _local_modules(root: str, limit: int = 500) -> set[str]:
    """`root` and the modules it imports, transitively, whose files are user code (not installed)."""
    installed = _installed_roots()
    found: set[str] = set()
    seen: set[str] = set()
    todo = [root]
    while todo and len(seen) < limit:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        # the top-level package first: `import tensorflow.keras` must not import TensorFlow to find out
        if name != root and not (_is_local(name.partition(".")[0], installed) and _is_local(name, installed)):
            continue
        found.add(name)
        source = _source_file(name)
        if source is not None:
            todo += _imported_names(name, source)
    return found


def _is_local(name: str, installed: tuple[Path, ...]) -> bool:
    """A module whose file lies outside the Python installation and its site-packages."""
    source = _source_file(name)
    return source is not None and not any(source.resolve().is_relative_to(r) for r in installed)


def _imported_names(name: str, source: Path) -> list[str]:
    """Every module an `import` or `from ... import` in `source` may name, relative ones resolved
    (`from pkg import sub` may import a submodule, so `pkg.sub` is a candidate too)."""
    try:
        tree = ast.parse(source.read_bytes().decode("utf-8", errors="replace"))
    except (SyntaxError, ValueError):
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


def _code(source: Path) -> bytes:
    """A Python file as its syntax tree: comments, blank lines and line endings (a CRLF checkout) do
    not change a key; any change to what the code does, its docstrings and messages included, does."""
    text = source.read_bytes().decode("utf-8", errors="replace")
    try:
        return ast.dump(ast.parse(text)).encode()
    except (SyntaxError, ValueError):  # not plain Python source: hash its text
        return text.replace("\r\n", "\n").encode()
