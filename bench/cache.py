"""Content-addressed cache of trained weights: the key is a hash of everything that determines them."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from bench.user_code import find_spec_without_import, local_modules, read_python, source_file

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
    are as much part of the weights as the zoo's files (bench.user_code). Installed libraries
    (standard library, site-packages) are left out: their versions are keyed by `library_versions`
    or not at all. A namespace package, having no file, counts by its name."""
    names = set(modules)
    if ":" in model:
        names |= local_modules(model.partition(":")[0])
    digest = hashlib.sha256()
    for name in sorted(names):
        source = source_file(find_spec_without_import(name))
        digest.update(name.encode() + b"\0")
        digest.update(_code(source) if source is not None else b"<no source file>")
    return digest.hexdigest()[:16]


def _code(source: Path) -> bytes:
    """A Python file as its syntax tree: comments, blank lines and line endings (a CRLF checkout) do
    not change a key; any change to what the code does, its docstrings and messages included, does."""
    text, tree = read_python(source)
    if tree is None:  # not plain Python source: hash its text
        return text.replace("\r\n", "\n").encode()
    return ast.dump(tree).encode()
