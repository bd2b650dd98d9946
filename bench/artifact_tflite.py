"""TFLite half of `bench.artifacts`: header and bounds checks of a .tflite flatbuffer, in Python.

LiteRT parses models in native code; a corrupt offset there can crash the process. Here the file
is read with the flatbuffer schema that ai_edge_litert ships (pure Python), and every index is
checked before any interpreter sees it.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import Any

from bench.artifacts import ArtifactInfo, TensorInfo
from bench.errors import ModelFileError, exception_line

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8 of every TFLite model


def parse_tflite(path: Path) -> Any:
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
        raise ModelFileError(f"{path}: corrupt or truncated TFLite flatbuffer ({exception_line(exc, 160)})") from None
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


def describe_tflite(path: Path) -> ArtifactInfo:
    model = parse_tflite(path)
    if model is None:
        return ArtifactInfo(str(path), "tflite", path.stat().st_size, [], [], {},
                            ["only the header was checked: pip install 'edgebench[tflite]' to check the whole "
                             "flatbuffer and list its tensors and operators"], checked="header")
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
