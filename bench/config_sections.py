"""Turning one TOML table into a config dataclass: unknown keys (with a did-you-mean), missing keys, types,
finite floats and each key's own check, every problem one ConfigError line naming the key."""

from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, fields
from typing import Any

from bench.errors import ConfigError


def suggest(word: str, candidates: Any) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_ok(value: Any, annotation: str) -> bool:
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation.startswith("list["):
        inner = annotation[5:-1]
        return isinstance(value, list) and all(_type_ok(v, inner) for v in value)
    raise AssertionError(f"unhandled config annotation {annotation}")


def build_section(cls: type, raw: dict[str, Any], where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}{suggest(key, known)}; valid keys: {', '.join(known)}")
    values = {}
    for name, f in known.items():
        if name not in raw:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where}: missing required key {name!r}")
            continue
        value = raw[name]
        if not _type_ok(value, str(f.type)):
            raise ConfigError(f"{where}.{name}: expected {f.type}, got {type(value).__name__} {value!r}")
        if f.type == "float":
            try:
                value = float(value)
            except OverflowError:  # a TOML integer of hundreds of digits
                value = math.inf
            if not math.isfinite(value):  # TOML has inf and nan; no setting means them (warmup_seconds = inf never ends)
                raise ConfigError(f"{where}.{name} = {value!r}: must be a finite number")
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where}.{name} = {value!r}: {problem}")
        values[name] = value
    return cls(**values)
