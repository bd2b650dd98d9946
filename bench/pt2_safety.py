"""Refuse a .pt2 archive whose loading could run code, before torch.export.load sees it.

Why: torch.export.load is pickle under the hood. It unpickles weights and constants marked
`use_pickle`, legacy `.pt` weight files and custom objects with `weights_only=False`, retries
sample inputs that a weights-only load rejects without that restriction, loads compiled
AOTInductor libraries, compiles the program's `guards_code` into a Python function, evaluates its
symbolic shape expressions with sympy (which uses eval), and resolves graph targets by attribute
path from the `torch` module (`torch.serialization.os.system` is such a path). A run folder can be
shared or edited, so its record (results.json) is no proof of where an artifact came from.

edgebench's own exports are plain programs: aten operators, raw tensor weights, one symbolic batch
size. `check_pt2_safe` accepts exactly that shape of archive and names what it refuses otherwise;
`bench.runtimes` calls it before every torch.export.load, `edgebench inspect` through
`bench.artifacts`.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from bench.errors import ModelFileError

# every member of a torch.export.save archive of a plain program (ROOT/ is the archive's folder)
_MEMBER = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                     r"|models/model\.json|data/sample_inputs/model\.pt|data/weights/model_weights_config\.json"
                     r"|data/constants/model_constants_config\.json|data/weights/weight_\d+|data/constants/tensor_constant_\d+)")
_PAYLOAD = {"data/weights/model_weights_config.json": "weight_", "data/constants/model_constants_config.json": "tensor_constant_"}
# names a symbolic shape expression may use: sympy's constructors and torch's shape functions
_SYMPY_NAMES = {"Symbol", "Integer", "Rational", "Float", "positive", "negative", "nonnegative", "integer", "real",
                "True", "False", "oo", "int_oo", "Max", "Min", "Mod", "Abs", "floor", "ceiling", "Eq", "Ne", "Lt", "Le",
                "Gt", "Ge", "And", "Or", "Not", "FloorDiv", "CeilDiv", "CleanDiv", "ModularIndexing", "PythonMod",
                "Where", "FloorToInt", "CeilToInt", "TruncToInt", "TruncToFloat", "RoundToInt", "RoundDecimal",
                "ToFloat", "IntTrueDiv", "FloatTrueDiv", "FloatPow", "PowByNatural", "LShift", "RShift", "Identity"}
_EXPR_TOKEN = re.compile(r"\s+|\d+(?:\.\d+)?|'[a-z]+\d+'|[A-Za-z_][A-Za-z0-9_]*|\*\*|//|[-+*/%(),=<>!]")
_SYMBOL_NAME = re.compile(r"[a-z]+\d+")  # s77, u0: the names torch gives shape symbols


def check_pt2_safe(path: Path) -> None:
    """ModelFileError (one line) unless the .pt2 at `path` is a plain program torch can load without running code."""
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(path, archive)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: not a valid .pt2 archive ({type(exc).__name__}: {str(exc)[:200]})") from None


def _check_archive(path: Path, archive: zipfile.ZipFile) -> None:
    names = archive.namelist()
    roots = {name.partition("/")[0] for name in names}
    if len(roots) != 1 or not all("/" in name for name in names):
        raise ModelFileError(f"{path}: not a torch.export archive of one program (expected one top-level folder)")
    root = roots.pop() + "/"
    for name in names:
        if not _MEMBER.fullmatch(name[len(root):]):
            raise ModelFileError(f"{path}: holds {name!r}, which edgebench does not load: only plain programs with raw "
                                 "tensor weights (no pickled objects, compiled code or legacy layouts) are loaded")
    for config, prefix in _PAYLOAD.items():
        if root + config in names:
            _check_payload_table(path, json.loads(archive.read(root + config)), prefix)
    program = json.loads(archive.read(root + "models/model.json"))
    if program.get("guards_code"):
        raise ModelFileError(f"{path}: its program carries guard code, which torch would compile and run; edgebench loads none")
    for key, value in _walk(program):
        if key == "target" and isinstance(value, str) and not (value.startswith("torch.ops.aten.") or value == "_operator.getitem"):
            raise ModelFileError(f"{path}: its program calls {value[:80]!r}; edgebench loads only programs of aten operators")
        if key == "expr_str" and not _plain_expression(value):
            raise ModelFileError(f"{path}: its program holds the shape expression {str(value)[:80]!r}, "
                                 "which is not a plain sympy expression")
    if root + "data/sample_inputs/model.pt" in names:
        _check_sample_inputs(path, archive.read(root + "data/sample_inputs/model.pt"))


def _check_payload_table(path: Path, table: Any, prefix: str) -> None:
    entries = table.get("config") if isinstance(table, dict) else None
    if not isinstance(entries, dict):
        raise ModelFileError(f"{path}: unreadable weights table")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False or not entry.get("tensor_meta") \
                or not str(entry.get("path_name", "")).startswith(prefix):
            raise ModelFileError(f"{path}: {name!r} is stored as a pickled object, not raw tensor bytes; edgebench does not unpickle it")


def _plain_expression(text: Any) -> bool:
    """Only numbers, operators, symbol names in quotes and the names of _SYMPY_NAMES: nothing for eval to reach."""
    if not isinstance(text, str) or len(text) > 2000:
        return False
    position = 0
    while position < len(text):
        token = _EXPR_TOKEN.match(text, position)
        if token is None:
            return False
        word = token.group()
        if word[0].isalpha() or word[0] == "_":
            if word not in _SYMPY_NAMES and not _SYMBOL_NAME.fullmatch(word):
                return False
        position = token.end()
    return True


def _check_sample_inputs(path: Path, data: bytes) -> None:
    """torch reads them weights-only first, and unrestricted when that fails: only the first may succeed."""
    import pickle

    import torch

    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, AttributeError, TypeError) as exc:
        raise ModelFileError(f"{path}: its sample inputs are not plain tensors (a weights-only load says: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def _walk(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)
