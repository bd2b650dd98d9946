"""Content-addressed cache of trained weights: the key is a hash of everything that determines them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def cache_key(parts: dict[str, Any]) -> str:
    """A stable 16-hex-digit hash of a JSON-serialisable description."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path, kind: str, key: str, suffix: str = ".pt") -> Path:
    path = Path(cache_dir) / kind / f"{key}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
