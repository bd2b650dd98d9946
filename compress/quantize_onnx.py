"""Artifact-level int8 quantization with ONNX Runtime's quantizer.

Static: QDQ format, per-channel weights by default (optionally the first convolution kept in
fp32), activations calibrated on real training images (MinMax, Entropy or Percentile) after
`quant_pre_process` (shape inference + graph optimisation, as ORT recommends). Dynamic: int8
weights, activation ranges computed per call. Both outputs get short internal tensor names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def _pre_process(source: Path, folder: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = folder / f"{source.stem}.pre.onnx"
    quant_pre_process(str(source), str(out), skip_symbolic_shape=False)
    return out


class _Batches:
    """ORT's CalibrationDataReader protocol over an in-memory array of prepared inputs."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch: int = 32) -> None:
        self._feeds = iter([{input_name: inputs[i:i + batch]} for i in range(0, len(inputs), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # pragma: no cover - only some calibrators call it
        raise NotImplementedError


def _input_and_first_conv(model_path: Path) -> tuple[str, str | None]:
    """The graph's input name and its first Conv node's name in graph order (None without a Conv)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return graph.input[0].name, next((node.name for node in graph.node if node.op_type == "Conv"), None)


def compact_names(path: Path) -> int:
    """Rewrite a quantized model in place with short internal names; returns the bytes saved.

    ORT's quantizer names every QDQ tensor after its source (e.g.
    "/features/features.5/features.5.2/Relu_output_0_zero_point"), and those strings, repeated in
    initializers, node inputs and outputs, are ~10% of a small int8 file: a deployment tax with no
    effect on the computation. Graph inputs and outputs keep their names, so feeds are unchanged;
    value_info (optional shape hints) and doc strings are dropped.
    """
    import onnx

    before = path.stat().st_size
    model = onnx.load(str(path))
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if name in keep:
            return name
        return short.setdefault(name, f"t{len(short)}")

    for tensor in graph.initializer:
        tensor.name = rename(tensor.name)
        tensor.doc_string = ""
    for i, node in enumerate(graph.node):
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = f"n{i}"
        node.doc_string = ""
    del graph.value_info[:]
    graph.doc_string = ""
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return before - path.stat().st_size


def quantize_static(source: Path, target: Path, params: dict[str, Any], calibration: np.ndarray) -> dict[str, Any]:
    """QDQ int8 model calibrated on `calibration` (inputs already prepared by the input_spec)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    # params come from the registry with every default filled in, so they are indexed, not .get()
    activation = QuantType.QUInt8 if params["activations"] == "uint8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = _pre_process(source, Path(tmp))
        input_name, first_conv = _input_and_first_conv(prepared)
        excluded = [first_conv] if params["fp32_first_conv"] and first_conv else []
        ort_quantize_static(str(prepared), str(target), _Batches(calibration, input_name),
                            quant_format=QuantFormat.QDQ, per_channel=params["per_channel"],
                            reduce_range=params["reduce_range"], activation_type=activation,
                            weight_type=QuantType.QInt8, calibrate_method=methods[params["calibration"]],
                            nodes_to_exclude=excluded, extra_options={"CalibTensorRangeSymmetric": False})
    saved = compact_names(target)
    return {"method": "static", "format": "QDQ", "calibration_images": int(len(calibration)),
            "names_compacted_bytes": saved,
            "activation_type": activation.name, "weight_type": "QInt8",
            "reduce_range": params["reduce_range"], "fp32_nodes": excluded}


def quantize_dynamic(source: Path, target: Path, params: dict[str, Any], calibration: np.ndarray | None = None) -> dict[str, Any]:
    """int8 weights; activations are quantized at run time (no calibration data needed)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        prepared = _pre_process(source, Path(tmp))
        ort_quantize_dynamic(str(prepared), str(target), per_channel=params["per_channel"], weight_type=QuantType.QInt8)
    saved = compact_names(target)
    return {"method": "dynamic", "weight_type": "QInt8", "activation_type": "QUInt8 (computed per call)",
            "names_compacted_bytes": saved}
