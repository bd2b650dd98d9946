"""Builders of bad (and good) input files for tests/test_bad_input.py: configs, IDX data,
checkpoints (one carrying code), ONNX with external data, TFLite and .pt2 files."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from bench.data import FASHION_MNIST_FILES
from tests.conftest import write_idx


# A run that finishes in seconds: an untrained tinycnn, no variants, torch and ONNX only. Bad-input
# cases change one thing in it; tests/bench/test_preflight.py runs it whole.
TINY_RUN_CONFIG = """
[data]
val_size = 50
[baseline]
model = "tinycnn"
epochs = 0
[export]
formats = ["torch", "onnx"]
[benchmark]
runtimes = ["torch", "onnxruntime"]
robustness = false
adversarial = false
[explain]
enabled = false
"""


def toml(tmp: Path, text: str | bytes) -> Path:
    path = tmp / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def fake_data(directory: Path, *, drop: str = "", truncate: str = "", garbage: str = "", n_train_labels: int = 200,
              max_label: int = 10, blank_train: bool = False, n_test: int = 50, replace: tuple[str, bytes] | None = None) -> Path:
    """Small Fashion-MNIST-shaped IDX files (200 train, 50 test), with one defect if asked for
    (`replace`: one file's stem and the raw IDX bytes written, gzipped, in its place)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train_images = np.full((200, 28, 28), 7) if blank_train else rng.integers(0, 256, (200, 28, 28))
    arrays = {"train_images": train_images, "train_labels": rng.integers(0, max_label, n_train_labels),
              "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": rng.integers(0, max_label, n_test)}
    for key, stem in FASHION_MNIST_FILES.items():
        if garbage == stem:
            (directory / stem).write_bytes(b"this is not an IDX file")
        elif truncate == stem:  # plain IDX with its last bytes missing
            raw = write_idx(directory / stem, arrays[key], gz=False).read_bytes()
            (directory / stem).write_bytes(raw[:-100])
        elif truncate == f"{stem}.gz":  # a download that stopped half-way
            raw = write_idx(directory / f"{stem}.gz", arrays[key]).read_bytes()
            (directory / f"{stem}.gz").write_bytes(raw[: len(raw) // 2])
        elif replace and replace[0] == stem:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(replace[1]))
        elif drop != f"{stem}.gz":
            write_idx(directory / f"{stem}.gz", arrays[key])
    return directory


def idx_bytes(type_code: int, shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """A raw IDX file: its magic (type code and dimension count), the big-endian shape, then `data`;
    `data` defaults to zeros of the size the shape and type need."""
    itemsize = {0x08: 1, 0x0D: 4}[type_code]
    header = bytes([0, 0, type_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    return header + (data or bytes(math.prod(shape) * itemsize))


class _Evil:
    """A pickle payload: loading it with plain pickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def checkpoint(tmp: Path, kind: str) -> Path:
    import pickle

    import torch

    from bench.zoo import edgecnn, tinycnn

    path = tmp / "w.pt"
    if kind == "truncated":
        torch.save(tinycnn().state_dict(), path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "wrong-shapes":
        torch.save(edgecnn().state_dict(), path)
    elif kind == "evil":
        torch.save({"features.0.0.weight": _Evil(tmp / "PWNED")}, path)
    elif kind == "evil-raw":
        path.write_bytes(pickle.dumps(_Evil(tmp / "PWNED")))
    elif kind == "nan":  # the weights of a training that diverged
        state = tinycnn().state_dict()
        state["features.0.0.weight"][0, 0, 0, 0] = float("nan")
        torch.save(state, path)
    elif kind == "complex":  # load_state_dict would drop the imaginary parts with a warning
        state = tinycnn().state_dict()
        state["features.0.0.weight"] = state["features.0.0.weight"].to(torch.complex64)
        torch.save(state, path)
    elif kind == "negative-variance":  # finite, yet every BatchNorm output would be NaN
        state = tinycnn().state_dict()
        key = next(k for k in state if k.endswith("running_var"))
        state[key][0] = -1.0
        torch.save(state, path)
    elif kind == "text":  # its first bytes once sent torch's unpickler into a KeyError
        path.write_text("hello not weights\n")
    return path  # "missing": never written


_ONNX: dict[str, bytes] = {}


def _tiny_onnx() -> bytes:
    """The tiny CNN as ONNX bytes, exported once per session."""
    if not _ONNX:
        import tempfile

        from bench.export import export_onnx
        from bench.zoo import tinycnn

        with tempfile.TemporaryDirectory() as folder:
            _ONNX["m"] = export_onnx(tinycnn(), Path(folder) / "m.onnx", (1, 28, 28)).read_bytes()
    return _ONNX["m"]


def external_onnx(folder: Path, *, location: str = "", data_bytes: int = 0, symlink: bool = False,
                  truncate: bool = False) -> Path:
    """folder/m.onnx with its weights in folder/weights.bin (valid), or with one defect."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    if truncate:
        return write_file(path, _tiny_onnx()[: len(_tiny_onnx()) // 2])
    onnx.save_model(onnx.load_from_string(_tiny_onnx()), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    weights = folder / "weights.bin"
    (folder.parent / "secret.bin").write_bytes(weights.read_bytes())  # what an escaping path would read
    if data_bytes:
        weights.write_bytes(weights.read_bytes()[:data_bytes])
    if symlink:
        weights.unlink()
        weights.symlink_to(folder.parent / "secret.bin")
    if location:
        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        path.write_bytes(model.SerializeToString())
    return path


def relu_tflite(path: Path, *, bad_index: bool = False) -> Path | None:
    """A minimal valid TFLite model (one RELU), built with LiteRT's flatbuffer schema; None without it."""
    try:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as s
    except ImportError:
        return None
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.RELU
    tensors = []
    for i, name in enumerate(("x", "y")):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 4], s.TensorType.FLOAT32, i + 1, name
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [7 if bad_index else 0], [1]
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], [s.BufferT() for _ in range(3)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return write_file(path, bytes(builder.Output()))


def bad_tflite(tmp: Path, kind: str) -> Path:
    path = relu_tflite(tmp / "m.tflite", bad_index=kind == "bad-index")
    if path is None:
        pytest.skip("ai-edge-litert (its flatbuffer schema) is not installed")
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    return path


def results_json(tmp: Path, document: dict | str) -> Path:
    import json

    run = mkdir_p(tmp / "run")
    (run / "results.json").write_text(document if isinstance(document, str) else json.dumps(document))
    return run


def mkdir_p(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def zip_without_program(path: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/readme.txt", "no program here")
    return path


def onnx_reading_an_undefined_tensor(path: Path) -> Path:
    """A well-formed ONNX file whose Relu reads a tensor nothing produces: the checker's message runs over lines."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["nonexistent"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def onnx_with_a_name_that_is_not_utf8(path: Path) -> Path:
    """A Relu model whose input tensor's name bytes were damaged into invalid UTF-8 (same length, so
    the protobuf still parses): protobuf returns such names as bytes, which no reader expects."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["XXXX"], ["y"])], "g",
                              [helper.make_tensor_value_info("XXXX", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    return write_file(path, data.replace(b"XXXX", b"\x89XXX"))


def damaged_pt2(path: Path, damage: str) -> Path:
    """A real tinycnn .pt2 re-zipped with one weight cut to 100 bytes ("short-weight") or without its
    weights table ("no-weights-table"): both pass the zip's CRC check, yet torch.export cannot load them."""
    import zipfile

    from bench.export import export_torch
    from bench.zoo import tinycnn

    good = export_torch(tinycnn().eval(), path.with_name("good.pt2"), (1, 28, 28))
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if damage == "no-weights-table" and info.filename.endswith("data/weights/model_weights_config.json"):
                continue
            if damage == "short-weight" and info.filename.endswith("data/weights/weight_0"):
                data = data[:100]
            target.writestr(info.filename, data)
    return path
