"""Render a Config as commented TOML (`edgebench run --print-config`): every key with its help text."""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from bench.config import Config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def to_toml(config: Config) -> str:
    """Render a config as TOML with a comment on every key (for `run --print-config`)."""
    out = ["# edgebench configuration. Every key is optional; shown here with the value in use.", ""]
    order = ["data", "baseline", "export", "benchmark", "explain", "output"]
    for name in order:
        section = getattr(config, name)
        out.append(f"[{name}]")
        for f in fields(section):
            out.append(f"# {f.metadata['help']}")
            out.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        out.append("")
    out.append("# Compression variants: each is an ordered chain of passes applied to the baseline. A file's")
    out.append("# [[variants]] replace the built-in ones; a file without any runs the baseline alone.")
    out.append("# Pass syntax: name(key=value, ...); `edgebench list` shows every pass and its parameters.")
    for variant in config.variants:
        out.append("[[variants]]")
        out.append(f"name = {_toml_value(variant.name)}")
        out.append("passes = [" + ", ".join(_toml_value(p) for p in variant.passes) + "]")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
