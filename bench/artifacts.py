"""Check a model artifact before a runtime loads it, and describe what is inside.

Why: ONNX Runtime and LiteRT parse files in native code, and an ONNX file can point its external
data at any path on the machine. `check_artifact` looks at the bytes first, with pure-Python
parsers (protobuf, flatbuffers, zip, JSON), and raises ModelFileError with one line naming the
file and the problem. It never unpickles anything: a .pt2 archive is only checked as a zip with a
serialized program inside; loading it (torch.export.load) may unpickle constants, so edgebench only
loads .pt2 files that it wrote itself.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ModelFileError

SUFFIX_FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".pt2": "torch"}
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every TFLite model


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_of(path: str | Path) -> str:
    """The artifact format from the file suffix: 'onnx', 'tflite' or 'torch' (.pt2)."""
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ModelFileError(f"{path}: unknown artifact type {Path(path).suffix or '(no suffix)'!r}; "
                             f"expected one of {', '.join(SUFFIX_FORMATS)}")
    return fmt


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:limit]


def check_artifact(path: Path, fmt: str) -> None:
    """Raise ModelFileError (one line) unless `path` is a well-formed artifact of format `fmt`.

    >>> check_artifact(Path("results/run/artifacts/baseline/baseline.fp32.onnx"), "onnx")  # doctest: +SKIP
    """
    path = Path(path)
    _require_file(path)
    checks = {"onnx": _load_onnx, "tflite": _parse_tflite, "torch": _read_pt2, "pt2": _read_pt2}
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
    describe = {"onnx": _describe_onnx, "tflite": _describe_tflite}.get(fmt, _describe_pt2)
    return describe(path)


# ---------------------------------------------------------------- ONNX

def _load_onnx(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)  # external data is checked below, not read
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise ModelFileError(f"{path}: not a valid ONNX model, corrupt or truncated ({_first_line(exc)})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise ModelFileError(f"{path}: not a valid ONNX model (no graph or no nodes; corrupt or not an ONNX file)")
    for tensor in _all_tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            _check_external(path, tensor)
    try:  # on the path, so the checker resolves external data relative to the model's folder
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, DecodeError) as exc:
        raise ModelFileError(f"{path}: ONNX checker rejected the model: {_first_line(exc)}") from None
    return model


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


# ---------------------------------------------------------------- TFLite

def _parse_tflite(path: Path) -> Any:
    """Header checks, then (where the schema module is installed) a bounds-checked parse in Python."""
    data = path.read_bytes()
    if len(data) < 8:
        raise ModelFileError(f"{path}: {len(data)} bytes is too short to be a TFLite flatbuffer (truncated?)")
    if data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(f"{path}: not a TFLite model (bytes 4..8 are {data[4:8]!r}, expected {TFLITE_IDENTIFIER!r})")
    root = int.from_bytes(data[:4], "little")
    if root + 4 > len(data):
        raise ModelFileError(f"{path}: truncated or corrupt TFLite file (root table at byte {root}, file has {len(data)})")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return None  # header checks only; LiteRT itself is not installed either
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    except (struct.error, IndexError, ValueError, TypeError, AttributeError, OverflowError, RecursionError, MemoryError) as exc:
        # what garbage offsets raise in the generated reader, before anything native sees the file
        raise ModelFileError(f"{path}: corrupt or truncated TFLite flatbuffer ({exc.__class__.__name__}: {_first_line(exc, 120)})") from None
    _check_tflite_indices(path, model, len(data))
    return model


def _check_tflite_indices(path: Path, model: Any, size: int) -> None:
    """Every index in the graph must point at an existing tensor, buffer or operator code."""
    buffers, codes = model.buffers or [], model.operatorCodes or []
    if not model.subgraphs:
        raise ModelFileError(f"{path}: TFLite model has no subgraph")
    for buffer in buffers:
        if buffer.offset and buffer.offset + buffer.size > size:
            raise ModelFileError(f"{path}: TFLite buffer at byte {buffer.offset} runs past the end of the file (truncated)")
    for s, graph in enumerate(model.subgraphs):
        tensors = graph.tensors or []
        for t in tensors:
            if not 0 <= t.buffer < max(len(buffers), 1):
                raise ModelFileError(f"{path}: subgraph {s} tensor refers to buffer {t.buffer} of {len(buffers)} (corrupt)")
        indices = list(graph.inputs or []) + list(graph.outputs or [])
        for op in graph.operators or []:
            if not 0 <= op.opcodeIndex < len(codes):
                raise ModelFileError(f"{path}: subgraph {s} operator uses opcode {op.opcodeIndex} of {len(codes)} (corrupt)")
            operands = list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else [])
            indices += [i for i in operands if i != -1]  # -1 marks an omitted optional operand
        bad = [int(i) for i in indices if not 0 <= i < len(tensors)]
        if bad:
            raise ModelFileError(f"{path}: subgraph {s} refers to tensor {bad[0]} of {len(tensors)} (corrupt)")


def _tflite_tensor(tensor: Any, type_names: dict[int, str]) -> TensorInfo:
    signature = list(tensor.shapeSignature) if tensor.shapeSignature is not None else (list(tensor.shape) if tensor.shape is not None else [])
    shape: list[int | str] = ["N" if i == 0 and d == -1 else int(d) for i, d in enumerate(signature)]
    q, quant = tensor.quantization, None
    if q is not None and q.scale is not None and len(q.scale):
        zero = list(q.zeroPoint) if q.zeroPoint is not None else [0]
        quant = (f"scale={float(q.scale[0]):.6g} zero_point={int(zero[0])}" if len(q.scale) == 1
                 else f"per-channel: {len(q.scale)} scales on axis {q.quantizedDimension}")
    name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
    return TensorInfo(name, shape, type_names.get(tensor.type, str(tensor.type)).lower(), quant)


def _describe_tflite(path: Path) -> ArtifactInfo:
    model = _parse_tflite(path)
    if model is None:
        return ArtifactInfo(str(path), "tflite", path.stat().st_size, [], [], {},
                            ["header checked only: install ai-edge-litert to list tensors and operators"])
    from ai_edge_litert import schema_py_generated as schema

    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops: Counter[str] = Counter()
    for op in graph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)  # schema v3a keeps both fields
        ops[code.customCode.decode() if code.customCode else op_names.get(builtin, str(builtin))] += 1
    dtypes = Counter(type_names.get(t.type, str(t.type)).lower() for t in graph.tensors or [])
    notes = [f"schema version {model.version}; {len(model.subgraphs)} subgraph(s); tensor types: "
             + ", ".join(f"{name} x{n}" for name, n in dtypes.most_common())]
    if any(t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale)
           for t in graph.tensors or []):
        notes.append("quantized: yes (integer tensors with scale/zero-point)")
    return ArtifactInfo(str(path), "tflite", path.stat().st_size,
                        [_tflite_tensor(graph.tensors[i], type_names) for i in graph.inputs],
                        [_tflite_tensor(graph.tensors[i], type_names) for i in graph.outputs],
                        dict(ops.most_common()), notes)


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
            return json.loads(archive.read(programs[0]))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        raise ModelFileError(f"{path}: not a valid .pt2 archive (not a zip, or corrupt: {_first_line(exc)})") from None


def _pt2_tensor(name: str, values: dict[str, Any]) -> TensorInfo:
    meta = values.get(name, {})
    shape: list[int | str] = [s["as_int"] if "as_int" in s else "N" for s in meta.get("sizes", [])]
    try:
        from torch._export.serde.schema import ScalarType  # the enum of the serialized dtypes

        dtype = ScalarType(meta.get("dtype", 0)).name.lower()
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
