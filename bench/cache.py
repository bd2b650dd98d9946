"""Content-addressed cache of trained weights: the key is a hash of everything that determines them."""

from __future__ import annotations

import hashlib
import importlib.util
import json
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


def code_digest(modules: Iterable[str], model: str = "") -> str:
    """A 16-hex-digit hash of the source files of `modules`, plus the module of a custom
    `module:factory` model, whose file is as much part of the weights as the zoo's."""
    names = sorted(set(modules) | ({model.partition(":")[0]} if ":" in model else set()))
    digest = hashlib.sha256()
    for name in names:
        spec = importlib.util.find_spec(name)
        source = Path(spec.origin) if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen") else None
        digest.update(name.encode() + b"\0")
        digest.update(source.read_bytes() if source is not None and source.is_file() else b"<no source file>")
    return digest.hexdigest()[:16]
