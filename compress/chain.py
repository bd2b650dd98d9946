"""Parse pass chains such as ["prune.structured(ratio=0.5, importance='l2')", "quantize.static()"].

Parameters are Python literals, parsed with `ast` (never evaluated), and checked against the
pass table in `compress.registry`.
"""

from __future__ import annotations

import ast
import difflib
from dataclasses import dataclass
from typing import Any

from compress.registry import PASSES, PassSpec


class PassSyntaxError(ValueError):
    """A pass string or its parameters are invalid. The message names the problem."""


@dataclass(frozen=True)
class PassCall:
    """One resolved pass with every parameter filled in (defaults included)."""

    spec: PassSpec
    params: dict[str, Any]

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.spec.name}({args})"


def _literal(node: ast.expr) -> Any:
    """A Python literal, also accepting TOML's lower-case true/false (configs are TOML files)."""
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return node.id == "true"
    return ast.literal_eval(node)


MAX_PASS_CHARS = 1000  # the longest real pass (every parameter of prune.structured spelled out) is under 150


def parse_pass(text: str, where: str = "pass") -> PassCall:
    """Parse one pass string; raises PassSyntaxError with the pass and key that are wrong."""
    if len(text) > MAX_PASS_CHARS:  # Python's parser runs out of stack or memory on absurd expressions
        raise PassSyntaxError(f"{where}: pass has {len(text)} characters; at most {MAX_PASS_CHARS}")
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, MemoryError, RecursionError):  # deep nesting within the limit can still exhaust the parser
        raise PassSyntaxError(f"{where}: cannot parse pass {text[:200]!r}; expected name(key=value, ...)") from None
    if isinstance(node, ast.Call):
        func, args, keywords = node.func, node.args, node.keywords
    else:
        func, args, keywords = node, [], []
    name = ast.unparse(func)
    if name not in PASSES:
        close = difflib.get_close_matches(name, PASSES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PassSyntaxError(f"{where}: unknown pass {name!r}{hint}; known passes: {', '.join(PASSES)}")
    spec = PASSES[name]
    if args:
        raise PassSyntaxError(f"{where}: {name} takes keyword arguments only, e.g. {name}(key=value)")
    params = {key: p.default for key, p in spec.params.items()}
    given: set[str] = set()
    for kw in keywords:
        if kw.arg is None:
            raise PassSyntaxError(f"{where}: {name} takes key=value arguments, not **mappings")
        if kw.arg in given:
            raise PassSyntaxError(f"{where}: {name} is given {kw.arg!r} twice")
        given.add(kw.arg)
        if kw.arg not in spec.params:
            raise PassSyntaxError(f"{where}: {name} has no parameter {kw.arg!r}; parameters: {', '.join(spec.params) or 'none'}")
        try:
            value = _literal(kw.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # e.g. {[1]: 2} is a TypeError
            raise PassSyntaxError(f"{where}: {name}({kw.arg}=...) must be a literal value") from None
        problem = spec.params[kw.arg].validate(value)
        if problem:
            raise PassSyntaxError(f"{where}: {name}({kw.arg}={value!r}): {problem}")
        params[kw.arg] = float(value) if spec.params[kw.arg].type is float else value
    problem = spec.check(params) if spec.check else None
    if problem:
        raise PassSyntaxError(f"{where}: {text.strip()}: {problem}")
    return PassCall(spec, params)


def parse_chain(passes: list[str], where: str = "variant") -> list[PassCall]:
    """Parse a chain. Artifact-level passes (kind 'onnx') must come after every model pass."""
    calls = [parse_pass(text, f"{where} pass {i + 1}") for i, text in enumerate(passes)]
    if not calls:
        raise PassSyntaxError(f"{where}: passes must not be empty")
    seen_artifact = False
    for call in calls:
        if call.spec.kind == "onnx":
            if seen_artifact:
                raise PassSyntaxError(f"{where}: only one artifact quantization pass per chain ({call.spec.name} follows another)")
            seen_artifact = True
        elif seen_artifact:
            raise PassSyntaxError(f"{where}: model pass {call.spec.name} cannot follow an artifact quantization pass")
    for before, call in enumerate(calls):
        # a zoo student starts from new weights (or the baseline's, with init='teacher'), never from
        # the model the passes before it made: their work would be thrown away unannounced
        if call.spec.name == "distill" and call.params["width"] and before:
            raise PassSyntaxError(f"{where}: {call} trains a new student at width {call.params['width']:g} and would discard "
                                  f"the passes before it; put it first, or distil into the current model with "
                                  f"distill(width=0) or finetune(distill=true)")
    return calls
