"""Artifact-level int8 quantization with ONNX Runtime's quantizer.

Static: QDQ format, per-channel weights by default, the stem (first convolution block) kept in
fp32 by default, activations calibrated on real training images (MinMax, Entropy or Percentile) after
`quant_pre_process` (shape inference + graph optimisation, as ORT recommends). Dynamic: int8
weights, activation ranges computed per call. Both outputs get short internal tensor names.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:
    import onnx


log = logging.getLogger("edgebench")


class _ToRunLog(logging.Handler):
    """Passes the quantizer's root-logger records (not edgebench's own) on to the run log."""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("edgebench"):
            log.info("onnxruntime quantization: %s", record.getMessage())


@contextlib.contextmanager
def _quantizer_output_to_run_log() -> Iterator[None]:
    """ORT's quantizer prints calibration progress to stdout and logs through the root logger with
    logging.warning(), whose first call installs a stderr handler (logging.basicConfig): from then
    on every edgebench log line also reached the terminal. While a handler is on the root logger
    basicConfig adds none; both kinds of output go to the run log instead."""
    handler, printed = _ToRunLog(), io.StringIO()
    logging.root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(printed):
            yield
    finally:
        logging.root.removeHandler(handler)
        for line in printed.getvalue().splitlines():
            if line.strip():
                log.info("onnxruntime quantization: %s", line.strip())


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


def keep_stem_fp32(model: onnx.ModelProto) -> tuple[list[str], str]:
    """Prepare a model (in place) for int8 with its stem in fp32; returns (stem node names to exclude, what was done).

    The stem is every node before the second Conv in graph order (the first conv, its activation,
    a pooling). Why: a 1-input-channel convolution is all overhead in int8 (ORT's QLinearConv took
    62 us vs 20 us for the fp32 conv in its per-op profile of the default baseline).

    Why the rewrite: with a stem Conv -> Relu -> MaxPool, ORT's QDQ propagation moves the
    quantization of the first int8 input up across the MaxPool, which then runs on uint8 in NCHW
    layout (37 us vs 8 us in fp32 NCHWc). Max-pooling commutes with ReLU, so the stem is rewritten
    as Conv -> MaxPool -> Relu: a Relu is not a node quantization moves across, so the pool
    stays in fp32 and int8 starts after it. The model computes the same function. A stem with a
    MaxPool that cannot be rewritten so (another activation, several consumers) is left to int8:
    measured here, an fp32 conv followed by a uint8 max-pool made the whole model slower.
    """
    graph = model.graph
    nodes = list(graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv"]
    if not convs:
        return [], "no Conv: nothing kept in fp32"
    stem = nodes[: convs[1]] if len(convs) > 1 else nodes[: convs[0] + 1]
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {v.name for v in graph.output}

    def only_consumer(tensor: str) -> onnx.NodeProto | None:
        users = consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in outputs else None

    conv = nodes[convs[0]]
    relu = only_consumer(conv.output[0])
    pool = only_consumer(relu.output[0]) if relu is not None and relu.op_type == "Relu" else None
    rewritable = pool is not None and pool.op_type == "MaxPool" and pool in stem and len(pool.output) == 1
    if not rewritable:
        if any(n.op_type == "MaxPool" for n in stem):
            return [], "stem left int8: its max-pool does not directly follow a Relu of the first Conv"
        return [n.name for n in stem], "stem kept fp32 (no max-pool in it)"
    assert relu is not None and pool is not None
    relu_out, pool_out = relu.output[0], pool.output[0]
    pool.input[0], pool.output[0] = conv.output[0], relu_out
    relu.input[0], relu.output[0] = relu_out, pool_out
    i, j = nodes.index(relu), nodes.index(pool)
    nodes[i], nodes[j] = nodes[j], nodes[i]
    del graph.node[:]
    graph.node.extend(nodes)
    # the swapped tensors changed shape (the Relu now runs after the pool): drop their old shape hints
    stale = [v for v in graph.value_info if v.name in (relu_out, pool_out)]
    for info in stale:
        graph.value_info.remove(info)
    return [n.name for n in stem], "stem kept fp32; Relu/MaxPool commuted so the max-pool stays fp32"


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
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    # params come from the registry with every default filled in, so they are indexed, not .get()
    activation = QuantType.QUInt8 if params["activations"] == "uint8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, _quantizer_output_to_run_log():
        prepared = onnx.load(str(_pre_process(source, Path(tmp))))  # read once; the stem rewrite works on it in memory
        excluded, stem = keep_stem_fp32(prepared) if params["fp32_stem"] else ([], "off")
        ort_quantize_static(prepared, str(target), _Batches(calibration, prepared.graph.input[0].name),
                            quant_format=QuantFormat.QDQ, per_channel=params["per_channel"],
                            reduce_range=params["reduce_range"], activation_type=activation,
                            weight_type=QuantType.QInt8, calibrate_method=methods[params["calibration"]],
                            nodes_to_exclude=excluded, extra_options={"CalibTensorRangeSymmetric": False})
    saved = compact_names(target)
    return {"method": "static", "format": "QDQ", "calibration_images": int(len(calibration)),
            "names_compacted_bytes": saved,
            "activation_type": activation.name, "weight_type": "QInt8",
            "reduce_range": params["reduce_range"], "fp32_nodes": excluded,
            "stem": stem}


def quantize_dynamic(source: Path, target: Path, params: dict[str, Any], calibration: np.ndarray | None = None) -> dict[str, Any]:
    """int8 weights; activations are quantized at run time (no calibration data needed)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, _quantizer_output_to_run_log():
        prepared = _pre_process(source, Path(tmp))
        ort_quantize_dynamic(str(prepared), str(target), per_channel=params["per_channel"], weight_type=QuantType.QInt8)
    saved = compact_names(target)
    return {"method": "dynamic", "weight_type": "QInt8", "activation_type": "QUInt8 (computed per call)",
            "names_compacted_bytes": saved}
