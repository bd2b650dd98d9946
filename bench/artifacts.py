"""Check a model artifact before a runtime loads it, and describe what is inside.

Why: ONNX Runtime and LiteRT parse files in native code, and an ONNX file can point its external
data at any path on the machine. `check_artifact` looks at the bytes first, with pure-Python
parsers (protobuf, flatbuffers, zip, JSON), and raises ModelFileError with one line naming the
file and the problem. It never unpickles anything: a .pt2 archive is checked as a zip with a
serialized program inside, and `bench.pt2_safety` refuses one whose loading (torch.export.load)
would unpickle an object or run code.
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ModelFileError, first_line, joined_lines
from bench.pt2_safety import check_pt2_safe

SUFFIX_FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".pt2": "torch"}


@dataclass
class TensorInfo:
    name: str
    shape: list[int | str]
    dtype: str
    quantization: str | None = None  # e.g. "scale=0.0039 zero_point=-128", or None for float tensors


@dataclass
class ArtifactInfo:
    path: str
    format: str
    size_bytes: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operators: dict[str, int]
    notes: list[str] = field(default_factory=list)
    checked: str = "structure"  # "header": only the file's header could be checked (a parser is not installed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_of(path: str | Path) -> str:
    """The artifact format from the file suffix: 'onnx', 'tflite' or 'torch' (.pt2)."""
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ModelFileError(f"{path}: unknown artifact type {Path(path).suffix or '(no suffix)'!r}; "
                             f"expected one of {', '.join(SUFFIX_FORMATS)}")
    return fmt


def check_artifact(path: Path, fmt: str) -> None:
    """Raise ModelFileError (one line) unless `path` is a well-formed artifact of format `fmt`.

    >>> check_artifact(Path("results/run/artifacts/baseline/baseline.fp32.onnx"), "onnx")  # doctest: +SKIP
    """
    path = Path(path)
    _require_file(path)
    from bench.artifact_tflite import parse_tflite

    checks = {"onnx": _load_onnx, "tflite": parse_tflite, "torch": _read_pt2, "pt2": _read_pt2}
    if fmt not in checks:
        raise ModelFileError(f"{path}: unknown artifact format {fmt!r}; expected onnx, tflite or torch")
    checks[fmt](path)


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))


def describe_artifact(path: Path, fmt: str | None = None) -> ArtifactInfo:
    """Check an artifact, then list its inputs, outputs (name, shape, dtype, quantization) and operators."""
    path = Path(path)
    _require_file(path)  # before guessing the format, so a typo reads "not found"
    fmt = fmt or format_of(path)
    check_artifact(path, fmt)
    from bench.artifact_tflite import describe_tflite

    describe = {"onnx": _describe_onnx, "tflite": describe_tflite}.get(fmt, _describe_pt2)
    return describe(path)


# ---------------------------------------------------------------- ONNX

def _load_onnx(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        # binary protobuf whatever the file's extension (onnx.load would read a .json or .textproto
        # as text, which no runtime here loads); external data is checked below, not read
        model = onnx.load(str(path), format="protobuf", load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(f"{path}: not a valid ONNX model, corrupt or truncated ({first_line(exc)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFileError(f"{path}: not a valid ONNX model (no graph or no nodes; corrupt or not an ONNX file)")
    if (name := _undecodable_name(model.graph)) is not None:  # protobuf hands back bytes for text that is not UTF-8
        raise ModelFileError(f"{path}: not a valid ONNX model, corrupt (the name {name[:40]!r} is not UTF-8 text)")
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external(path, tensor)
    try:  # on the path, so the checker resolves external data relative to the model's folder
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, DecodeError) as exc:
        raise ModelFileError(f"{path}: ONNX checker rejected the model: {joined_lines(exc)}") from None
    except UnicodeDecodeError as exc:  # a damaged name or string attribute that protobuf parsed as bytes
        raise ModelFileError(f"{path}: not a valid ONNX model, corrupt ({first_line(exc)})") from None
    return model


def _undecodable_name(graph: Any) -> bytes | None:
    """The first tensor, node or operator name of a graph that is not valid UTF-8, else None."""
    names = [*(v.name for v in (*graph.input, *graph.output, *graph.value_info, *graph.initializer)),
             *(text for node in graph.node for text in (node.name, node.op_type, node.domain, *node.input, *node.output))]
    return next((name for name in names if isinstance(name, bytes)), None)


def _all_tensors(graph: Any) -> Any:
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def _check_external(model_path: Path, tensor: Any) -> None:
    """External data must be a file inside the model's folder, long enough for the tensor."""
    import numpy as np
    from onnx import helper

    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    where = f"{model_path}: tensor {tensor.name!r} external data location {location!r}"
    if not location:
        raise ModelFileError(f"{where}: empty location")
    if Path(location).is_absolute() or location.startswith(("/", "\\")) or (len(location) > 1 and location[1] == ":"):
        raise ModelFileError(f"{where} is an absolute path; external data must be a file inside the model's folder")
    folder = model_path.parent.resolve()
    target = (folder / location).resolve()  # resolves '..' and symlinks before the containment test
    if not target.is_relative_to(folder):
        raise ModelFileError(f"{where} points outside the model's folder {folder}; refused")
    if not target.is_file():
        raise ModelFileError(f"{where}: external data file {target} does not exist")
    try:
        offset, length = int(entries.get("offset", 0)), int(entries["length"]) if "length" in entries else None
    except ValueError:
        raise ModelFileError(f"{where}: offset/length are not integers") from None
    if length is None:
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            itemsize = 0  # strings and exotic types: only the offset can be checked
        length = int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
    size = target.stat().st_size
    if offset < 0 or length < 0 or offset + length > size:
        raise ModelFileError(f"{where}: needs bytes {offset}..{offset + length} but {target.name} has only {size} "
                             "(truncated external data)")


def _onnx_tensor(value: Any) -> TensorInfo:
    import numpy as np
    from onnx import TensorProto, helper

    tensor_type = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = TensorProto.DataType.Name(tensor_type.elem_type).lower()
    return TensorInfo(value.name, shape, dtype)


def _describe_onnx(path: Path) -> ArtifactInfo:
    model = _load_onnx(path)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    ops = Counter(node.op_type for node in graph.node)
    quant_ops = {op: n for op, n in ops.items() if "Quantize" in op or op.startswith("QLinear") or op.endswith("Integer")}
    used = {node.domain for node in graph.node} | {""}  # quantizers declare many domains they never use
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import if o.domain in used)
    notes = [f"opset {opsets}; producer {model.producer_name} {model.producer_version}".rstrip()]
    notes.append("quantized: " + ", ".join(f"{op} x{n}" for op, n in sorted(quant_ops.items())) if quant_ops
                 else "quantized: no (float graph)")
    return ArtifactInfo(str(path), "onnx", path.stat().st_size,
                        [_onnx_tensor(v) for v in graph.input if v.name not in initializers],
                        [_onnx_tensor(v) for v in graph.output], dict(ops.most_common()), notes)


# ---------------------------------------------------------------- torch.export (.pt2)

def _read_pt2(path: Path) -> dict[str, Any]:
    """The serialized program (JSON) of a .pt2 zip archive, read without unpickling anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # CRC of every member: catches truncation and bit rot
            if bad is not None:
                raise ModelFileError(f"{path}: corrupt .pt2 archive (member {bad!r} fails its CRC check)")
            programs = [n for n in archive.namelist() if "/models/" in n and n.endswith(".json")]
            if not programs:
                raise ModelFileError(f"{path}: zip archive without a serialized program (models/*.json); not a torch.export .pt2 file")
            program = json.loads(archive.read(programs[0]))
            if not isinstance(program, dict):
                raise ModelFileError(f"{path}: {programs[0]} is not a serialized program")
            _check_pt2_weights(path, archive, programs[0], program)
    # JSONDecodeError is a ValueError; AttributeError, TypeError, KeyError: JSON of another shape than a program's
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, RecursionError, AttributeError, TypeError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a valid .pt2 archive (not a zip, or corrupt: {first_line(exc)})") from None
    check_pt2_safe(path)  # what torch.export.load would unpickle or run
    return program


# bytes per element of torch's serialized scalar types (torch._export.serde.schema.ScalarType values)
_PT2_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2, 28: 2,
                 29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8}


def _check_pt2_weights(path: Path, archive: zipfile.ZipFile, program_file: str, program: dict[str, Any]) -> None:
    """Every parameter and persistent buffer the program takes is in the archive's weights table, stored in a file large
    enough for its shape: a weight cut short or missing passes the zip's CRC check, yet torch.export
    fails to load it."""
    specs = ((program.get("graph_module") or {}).get("signature") or {}).get("input_specs") or []
    parameters = ([spec["parameter"].get("parameter_name") for spec in specs if isinstance(spec, dict) and "parameter" in spec]
                  + [spec["buffer"].get("buffer_name") for spec in specs  # persistent buffers: BN statistics
                     if isinstance(spec, dict) and "buffer" in spec and spec["buffer"].get("persistent")])
    if not parameters:
        return
    root, _, name = program_file.rpartition("/models/")
    weights, model = f"{root}/data/weights/", name.removesuffix(".json")
    sizes = {info.filename: info.file_size for info in archive.infolist()}
    if f"{weights}{model}.pt" in sizes:  # the older layout (one pickled file): bench.pt2_safety refuses it
        return
    try:
        table = json.loads(archive.read(f"{weights}{model}_weights_config.json"))["config"]
    except KeyError:
        raise ModelFileError(f"{path}: .pt2 archive without its weights table (data/weights/{model}_weights_config.json)") from None
    for name in parameters:
        entry = table.get(name) if isinstance(table, dict) else None
        if not isinstance(entry, dict) or f"{weights}{entry.get('path_name')}" not in sizes:
            raise ModelFileError(f"{path}: .pt2 archive lacks the weights of {name!r}")
        meta = entry.get("tensor_meta") or {}
        shape = [s.get("as_int") for s in meta.get("sizes", [])]
        strides = [s.get("as_int") for s in meta.get("strides", [])]
        itemsize = _PT2_ITEMSIZE.get(meta.get("dtype"))
        offset = (meta.get("storage_offset") or {}).get("as_int", 0)
        if entry.get("use_pickle") or itemsize is None or not all(isinstance(v, int) for v in shape + strides + [offset]):
            continue  # a layout this check does not know: torch.export.load judges it
        if 0 in shape:
            continue
        needed = (offset + sum((n - 1) * st for n, st in zip(shape, strides)) + 1) * itemsize
        stored = sizes[f"{weights}{entry['path_name']}"]
        if stored < needed:
            raise ModelFileError(f"{path}: .pt2 weights of {name!r} are cut short ({stored} bytes, "
                                 f"its shape {shape} needs {needed})")


# torch's serialized scalar types are C names (FLOAT, LONG); numpy's, as ONNX and TFLite tensors show them
_PT2_DTYPE_NAMES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
                    "short": "int16", "byte": "uint8", "char": "int8", "bool": "bool", "bfloat16": "bfloat16"}


def _pt2_tensor(name: str, values: dict[str, Any]) -> TensorInfo:
    meta = values.get(name, {})
    shape: list[int | str] = [s["as_int"] if "as_int" in s else "N" for s in meta.get("sizes", [])]
    try:
        from torch._export.serde.schema import ScalarType  # the enum of the serialized dtypes

        dtype = ScalarType(meta.get("dtype", 0)).name.lower()
        dtype = _PT2_DTYPE_NAMES.get(dtype, dtype)  # the names ONNX and TFLite tensors get (numpy's)
    except (ImportError, ValueError):
        dtype = f"dtype#{meta.get('dtype')}"
    return TensorInfo(name, shape, dtype)


def _describe_pt2(path: Path) -> ArtifactInfo:
    program = _read_pt2(path)
    try:
        module = program["graph_module"]
        graph, signature = module["graph"], module["signature"]
        values = graph.get("tensor_values", {})
        inputs = [spec["user_input"]["arg"]["as_tensor"]["name"] for spec in signature["input_specs"] if "user_input" in spec]
        outputs = [spec["user_output"]["arg"]["as_tensor"]["name"] for spec in signature["output_specs"] if "user_output" in spec]
        ops = Counter(str(node["target"]).removeprefix("torch.ops.") for node in graph["nodes"])
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: unexpected .pt2 program layout (missing {exc}); written by another torch version?") from None
    notes = [f"torch {program.get('torch_version', '?')}; parameters and buffers are not listed as inputs"]
    return ArtifactInfo(str(path), "torch", path.stat().st_size, [_pt2_tensor(n, values) for n in inputs],
                        [_pt2_tensor(n, values) for n in outputs], dict(ops.most_common()), notes)
