"""Refuse a .pt2 archive whose loading could run code, before torch.export.load sees it.

Why: torch.export.load is pickle under the hood. It unpickles weights and constants marked
`use_pickle`, legacy `.pt` weight files and custom objects with `weights_only=False`, retries
sample inputs that a weights-only load rejects without that restriction, loads compiled
AOTInductor libraries, compiles the program's `guards_code` into a Python function, evaluates its
symbolic shape expressions with sympy (which uses eval), and resolves graph targets by attribute
path from the `torch` module (`torch.serialization.os.system` is such a path); `.module()` then
writes names from the program into Python source that FX compiles and runs. A run folder can be
shared or edited, so its record (results.json) is no proof of where an artifact came from.

edgebench's own exports are plain programs: aten operators, raw tensor weights, one symbolic batch
size. `check_pt2_safe` is a fail-closed allow-list of exactly that shape of archive, read as torch
reads it, and names what it refuses; `bench.runtimes` calls it before every torch.export.load,
`edgebench inspect` through `bench.artifacts`. It is defence in depth, not a proof (the README
says so): each rule below answers a way in that a review found or torch's loader shows.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import zipfile
from pathlib import Path
from typing import Any, Iterator

from bench.errors import ModelFileError

# every member of a torch.export.save archive of a plain program (ROOT/ is the archive's folder)
_MEMBER = re.compile(r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                     r"|models/model\.json|data/sample_inputs/model\.pt|data/weights/model_weights_config\.json"
                     r"|data/constants/model_constants_config\.json|data/weights/weight_\d+|data/constants/tensor_\d+)")
# the tables of raw tensors, and the file-name prefix torch gives their payloads (pt2_archive_constants.h)
_PAYLOAD = {"data/weights/model_weights_config.json": ("weight", "weight_"),
            "data/constants/model_constants_config.json": ("constant", "tensor_")}
# graph targets: aten operators (name and overload, no dunder attribute of them), and the Python
# builtins and torch.sym_* functions torch's own verifier allows for shape arithmetic
_ATEN_TARGET = re.compile(r"torch\.ops\.aten\.(?!__)\w+\.[A-Za-z]\w*")
_OTHER_TARGETS = {f"_operator.{name}" for name in ("getitem", "add", "mul", "sub", "truediv", "ge", "le", "gt", "lt", "eq", "ne",
                                                    "floordiv", "mod", "and_", "or_", "not_", "pow", "neg", "abs", "lshift", "rshift")} \
    | {"math.ceil", "math.floor", "math.trunc"} \
    | {f"torch.sym_{name}" for name in ("int", "float", "ite", "max", "min", "not", "sqrt", "sum")}
# what a shape expression (written by sympy.srepr) may call: sympy's constructors and torch's shape functions
_SYMPY_CALLS = {"Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs", "floor", "ceiling",
                "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan",
                "Equality", "Unequality", "And", "Or", "Not", "FloorDiv", "CeilDiv", "CleanDiv", "ModularIndexing",
                "PythonMod", "Where", "FloorToInt", "CeilToInt", "TruncToInt", "TruncToFloat", "RoundToInt", "RoundDecimal",
                "ToFloat", "IntTrueDiv", "FloatTrueDiv", "FloatPow", "PowByNatural", "LShift", "RShift", "Identity",
                "IsNonOverlappingAndDenseIndicator"}
_SYMPY_NAMES = {"true", "false", "oo", "zoo", "nan", "int_oo", "S"}
_SYMPY_KEYWORDS = {"integer", "positive", "negative", "nonnegative", "nonpositive", "real", "finite", "commutative", "precision"}
_SYMBOL_NAME = re.compile(r"[a-z]+\d+")  # s77, u0: the names torch gives shape symbols
_DECIMAL = re.compile(r"-?\d{1,30}(\.\d{1,30})?(e-?\d{1,3})?")  # Float('1.5', precision=53)
# node, argument, weight and type names; dtypes: no segment may start with '__' (a dunder attribute)
_NAME = re.compile(r"(?!__)(?!.*\.__)[A-Za-z0-9_.]{0,300}")
_VERSION = re.compile(r"[A-Za-z0-9_.+]{1,40}")  # 2.14.1+cu130
_INERT_METADATA = {"stack_trace", "nn_module_stack", "source_fn_stack", "torch_fn", "custom"}
_SPEC_TYPES = {None, "builtins.tuple", "builtins.list", "builtins.dict"}
_SOURCE_FN_STACK = re.compile(r"\w+,[\w.]+(;\w+,[\w.]+)*")


def check_pt2_safe(path: Path) -> None:
    """ModelFileError (one line) unless the .pt2 at `path` is a plain program torch can load without running code."""
    try:
        members = _members(path)
        _check_members(path, members)
    # JSONDecodeError is a ValueError; AttributeError, TypeError, KeyError: JSON of another shape than a program's
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RecursionError, AttributeError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a valid .pt2 archive ({type(exc).__name__}: {str(exc)[:200]})") from None


def _members(path: Path) -> dict[str, bytes]:
    """{member name below the archive's folder: bytes}, as torch's zip reader (miniz) sees the file,
    which is what torch.export.load reads. Python's zipfile must see exactly the same: a file built
    so that the two readers find different central directories would otherwise pass the check with
    one archive and load the other."""
    import torch

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if len({name.lower() for name in names}) != len(names):  # miniz finds members case-blind
            raise ModelFileError(f"{path}: holds two members of one name; edgebench checks one copy, torch could read the other")
        roots = {name.partition("/")[0] for name in names}
        if len(roots) != 1 or not all("/" in name for name in names):
            raise ModelFileError(f"{path}: not a torch.export archive of one program (expected one top-level folder)")
        seen_by_python = {name.partition("/")[2]: archive.read(name) for name in names}
    try:
        reader = torch._C.PyTorchFileReader(str(path))  # the reader torch.export.load uses
        seen_by_torch = {name: bytes(reader.get_record(name)) for name in reader.get_all_records()}
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: torch cannot read this archive ({str(exc).splitlines()[0][:200]})") from None
    if seen_by_torch != seen_by_python:
        raise ModelFileError(f"{path}: Python's and torch's zip readers see different contents (a doctored archive); "
                             "edgebench loads only an archive both read alike")
    return seen_by_torch


def _check_members(path: Path, members: dict[str, bytes]) -> None:
    for name in members:
        if not _MEMBER.fullmatch(name):
            raise ModelFileError(f"{path}: holds {name!r}, which edgebench does not load: only plain programs with raw "
                                 "tensor weights (no pickled objects, compiled code or legacy layouts) are loaded")
    for table, (what, prefix) in _PAYLOAD.items():
        if table in members:
            _check_payload_table(path, json.loads(members[table]), what, prefix)
    if "models/model.json" not in members:
        raise ModelFileError(f"{path}: zip archive without models/model.json; not a torch.export .pt2 file")
    program = json.loads(members["models/model.json"])
    if not isinstance(program, dict):
        raise ModelFileError(f"{path}: models/model.json is not a serialized program")
    if program.get("guards_code"):
        raise ModelFileError(f"{path}: its program carries guard code, which torch would compile and run; edgebench loads none")
    _check_strings(path, program)
    if "data/sample_inputs/model.pt" in members:
        _check_sample_inputs(path, members["data/sample_inputs/model.pt"])


def _check_payload_table(path: Path, table: Any, what: str, prefix: str) -> None:
    entries = table.get("config") if isinstance(table, dict) else None
    if not isinstance(entries, dict):
        raise ModelFileError(f"{path}: unreadable {what} table")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("use_pickle") is not False or not entry.get("tensor_meta") \
                or not str(entry.get("path_name", "")).startswith(prefix):
            raise ModelFileError(f"{path}: {what} {name!r} is stored as a pickled object, not raw tensor bytes; "
                                 "edgebench does not unpickle it")


def _plain_expression(text: Any) -> bool:
    """Python syntax of calls to _SYMPY_CALLS with names, short constants and keywords as arguments,
    as sympy.srepr writes: nothing sympify's eval could reach, and no operator (10**10**10 would
    make it compute a number of ten billion digits)."""
    if not isinstance(text, str) or len(text) > 5000:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    return _plain_node(tree.body)


def _plain_node(node: ast.AST, text_allowed: re.Pattern[str] | None = None) -> bool:
    """`text_allowed`: the strings this argument may be (a string is sympified, i.e. evaluated, by most
    sympy constructors, so only Symbol's name and Float's digits may be one)."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, str):
            return text_allowed is not None and bool(text_allowed.fullmatch(value))
        return isinstance(value, (bool, float)) or (isinstance(value, int) and abs(value) < 2**63)
    if isinstance(node, ast.Name):
        return node.id in _SYMPY_NAMES or node.id in _SYMPY_CALLS or bool(_SYMBOL_NAME.fullmatch(node.id))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _plain_node(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SYMPY_CALLS:
        first_text = {"Symbol": _SYMBOL_NAME, "Float": _DECIMAL}.get(node.func.id)
        return (all(_plain_node(arg, first_text if i == 0 else None) for i, arg in enumerate(node.args))
                and all(k.arg in _SYMPY_KEYWORDS and _plain_node(k.value) for k in node.keywords))
    return False


def _check_strings(path: Path, program: dict[str, Any]) -> None:
    """Every text in the program is checked by what torch does with it; anything else must be a
    plain name (letters, digits, '_', '.'). Fail closed: torch writes a name (a node's, an
    argument's) into the Python source it generates and runs, and a new field must not slip by."""
    for key, value in _walk(program):
        if isinstance(key, str) and not _NAME.fullmatch(key):
            raise ModelFileError(f"{path}: its program has the key {key[:80]!r}, which is not a plain name")
        if not isinstance(value, str):
            continue
        if key in ("target", "as_operator"):  # as_operator: an operator passed as an argument, resolved alike
            fine = _operator_target(value)
        elif key == "expr_str":
            fine = _plain_expression(value)
        elif key in ("in_spec", "out_spec"):
            fine = _plain_treespec(value)
        elif key == "name":  # node and argument names: FX writes them into generated source as identifiers
            fine = value.isidentifier() and not keyword.iskeyword(value) and not value.startswith("__")
        elif key == "source_fn_stack":  # "node,path;..." whose paths torch resolves by getattr from torch
            fine = bool(_SOURCE_FN_STACK.fullmatch(value)) and ".__" not in value and ",__" not in value
        elif key in _INERT_METADATA:  # stored with each node for debugging; torch runs none of it
            fine = len(value) <= 20_000
        else:
            fine = bool(_NAME.fullmatch(value)) or (key == "torch_version" and bool(_VERSION.fullmatch(value)))
        if not fine:
            raise ModelFileError(f"{path}: its program's {key!r} holds {value[:80]!r}, which edgebench does not "
                                 "load (only aten operators, plain names and sympy shape expressions)")


def _operator_target(name: str) -> bool:
    """A listed builtin, or torch.ops.aten.<op>.<overload> that really is an operator overload (the
    pattern alone would let `torch.ops.aten.name.format`, a method of the namespace's name, through)."""
    if name in _OTHER_TARGETS:
        return True
    if not _ATEN_TARGET.fullmatch(name):
        return False
    import torch

    op, overload = name.split(".")[3:5]
    packet = getattr(torch.ops.aten, op, None)
    return isinstance(packet, torch._ops.OpOverloadPacket) and isinstance(getattr(packet, overload, None), torch._ops.OpOverload)


def _plain_treespec(text: str) -> bool:
    """A pytree spec (JSON) as torch writes one for a tuple of tensors: nodes of tuple, list or dict
    type (no enum or defaultdict, whose specs name modules to import), keyed by plain names."""
    try:
        spec = json.loads(text)
    except (ValueError, RecursionError):
        return False
    if not (isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], int)):
        return False
    return _plain_spec_node(spec[1])


def _plain_spec_node(node: Any) -> bool:
    if not (isinstance(node, dict) and set(node) == {"type", "context", "children_spec"}):
        return False
    if node["type"] not in _SPEC_TYPES or not isinstance(node["children_spec"], list):
        return False
    try:  # the context is itself JSON: null, or a container's keys
        keys = json.loads(node["context"]) if isinstance(node["context"], str) else node["context"]
    except (ValueError, RecursionError):
        return False
    if keys is not None and not (isinstance(keys, list) and all(isinstance(k, str) and _NAME.fullmatch(k) for k in keys)):
        return False
    return all(_plain_spec_node(child) for child in node["children_spec"])


def _check_sample_inputs(path: Path, data: bytes) -> None:
    """torch reads them weights-only first, and unrestricted when that fails: only the first may
    succeed. Then they must be what an export of a model taking tensors saves, `((tensor, ...), {})`:
    torch writes the keys of other structures into the guard code it generates (a review made a
    dict key run code there)."""
    import pickle

    import torch

    try:
        inputs = torch.load(io.BytesIO(data), weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError, AttributeError, TypeError) as exc:
        # torch's message is paragraphs (with terminal colours and advice to load unsafely): its
        # "WeightsUnpickler error:" line is the one that names what was refused
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        why = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0] if lines else type(exc).__name__)
        raise ModelFileError(f"{path}: its sample inputs are not plain tensors ({why[:200]})") from None
    if not (isinstance(inputs, tuple) and len(inputs) == 2 and isinstance(inputs[0], tuple) and inputs[1] == {}
            and all(type(t) is torch.Tensor for t in inputs[0])):
        raise ModelFileError(f"{path}: its sample inputs are not a tuple of tensors (({type(inputs).__name__} ...)); "
                             "edgebench loads only programs that take tensors")


def _walk(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(node, list):
        for item in node:  # a list's items stand under the list's key (forward_arg_names: ["x"])
            yield key, item
            yield from _walk(item, key)
