"""Runtimes: what each engine runs (formats, devices) as data, and how it loads an artifact.

A runtime's `load` returns `predict(x: np.ndarray) -> np.ndarray` of float logits, where x is
already prepared by the artifact's input_spec. Engines are imported inside their loader, so this
module is cheap to import and a run without TFLite never imports a TFLite package.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    formats: tuple[str, ...]
    devices: tuple[str, ...]
    module: str  # import name; its absence makes the runtime unavailable
    help: str
    call: str  # how predict() calls it: recorded in every run, since it is part of what a latency means


RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in [
        RuntimeSpec("torch", ("torch",), ("cpu", "cuda"), "torch", "PyTorch eager on a torch.export program (.pt2)",
                    "module(torch.from_numpy(x)) under inference_mode"),
        RuntimeSpec("onnxruntime", ("onnx",), ("cpu", "cuda"), "onnxruntime", "ONNX Runtime, CPUExecutionProvider (CUDAExecutionProvider with onnxruntime-gpu)",
                    "run_with_iobinding, buffers bound once per input shape (CPU); session.run (CUDA)"),
        RuntimeSpec("litert", ("tflite",), ("cpu",), "ai_edge_litert", "LiteRT (TFLite) interpreter with XNNPACK",
                    "set_tensor, invoke, get_tensor"),
    ]
}


def runtime_for_format(fmt: str, enabled: list[str]) -> list[RuntimeSpec]:
    return [RUNTIMES[name] for name in enabled if fmt in RUNTIMES[name].formats]


def is_installed(spec: RuntimeSpec) -> bool:
    return importlib.util.find_spec(spec.module) is not None


def cuda_reason(runtime: str) -> str | None:
    """None when `runtime` can use CUDA here, else why not (becomes a skipped row's reason)."""
    if runtime == "torch":
        import torch

        return None if torch.cuda.is_available() else "no CUDA device visible to torch on this machine"
    if runtime == "onnxruntime":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu on a CUDA machine)"
        return None
    return f"{runtime} runs on the CPU only in edgebench"


# (file, its size and mtime, device) -> the module loaded from it. Loading a .pt2 takes seconds
# (about 4 s for the default CNN), and the measurement worker loads the same file again at
# another thread count; under inference_mode the module holds no state, so the copies can share it.
_TORCH_MODULES: dict[tuple[str, int, int, str], Any] = {}


def _load_torch(artifact: Path, threads: int, device: str) -> Predict:
    import torch

    torch.set_num_threads(threads)
    stat = artifact.stat()
    key = (str(artifact.resolve()), stat.st_size, stat.st_mtime_ns, device)
    if key not in _TORCH_MODULES:
        if len(_TORCH_MODULES) >= 4:  # a long-lived process (ab, pytest_artifacts) must not keep every model
            _TORCH_MODULES.pop(next(iter(_TORCH_MODULES)))
        from bench.pt2_safety import check_pt2_safe

        check_pt2_safe(artifact)  # a run folder may have been edited: nothing in it is unpickled or run
        # no guard function: torch generates its code from names in the archive, and the inputs here
        # are always the artifact's own input_spec (prepare_input), which the guards would only re-check
        _TORCH_MODULES[key] = torch.export.load(str(artifact)).module(check_guards=False).to(device)
    module = _TORCH_MODULES[key]

    def predict(x: np.ndarray) -> np.ndarray:
        # torch's thread count is per process: another artifact loaded later (the evaluation copy
        # on every core) must not change the count this one was loaded with
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            out = module(torch.from_numpy(x).to(device))
            return out.float().cpu().numpy()

    return predict


def _load_onnxruntime(artifact: Path, threads: int, device: str) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.startswith("cuda") else ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(artifact), options, providers=providers)
    name = session.get_inputs()[0].name
    if device.startswith("cuda"):
        return lambda x: session.run(None, {name: x})[0]
    return _bound_predict(session, name)


def _bound_predict(session: Any, input_name: str) -> Predict:
    """predict() through an IOBinding: input and output buffers are bound once per input shape.

    Why: `session.run(None, {name: x})` spends about 7 us per call here on Python-side work
    (checking the feed, allocating the output, converting it to numpy), which is a tenth of a
    small pruned model's latency and says nothing about the runtime. Binding buffers once is how
    latency-critical callers use ORT; every ORT row, the baseline included, is timed this way.
    """
    import onnxruntime as ort

    outputs = [o.name for o in session.get_outputs()]
    bound: dict[str, Any] = {}  # the binding for the last input shape, and the buffers it points into

    def predict(x: np.ndarray) -> np.ndarray:
        key = (x.shape, x.dtype.str)
        if bound.get("key") != key:
            first = session.run(outputs, {input_name: x})  # also gives the output shapes
            x_buffer, y_buffers = np.empty_like(x, order="C"), [np.empty_like(y, order="C") for y in first]
            binding = session.io_binding()
            binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(x_buffer))
            for out_name, buffer in zip(outputs, y_buffers):
                binding.bind_ortvalue_output(out_name, ort.OrtValue.ortvalue_from_numpy(buffer))
            bound.update(key=key, binding=binding, x=x_buffer, outputs=y_buffers)  # the binding's buffers, kept alive here
            return first[0]
        np.copyto(bound["x"], x)  # ORT reads the bound buffer in place
        session.run_with_iobinding(bound["binding"])
        return bound["outputs"][0].copy()  # the buffer is overwritten by the next call

    return predict


def _load_litert(artifact: Path, threads: int, device: str) -> Predict:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # AUTO (LiteRT's default, spelled out): builtin kernels with the default XNNPACK delegate on
    # every op it supports; scripts/int8_probe.py --no-xnnpack times the same files without it
    interpreter = Interpreter(model_path=str(artifact), num_threads=threads,
                              experimental_op_resolver_type=OpResolverType.AUTO)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    out_scale, out_zero = out["quantization"]
    state: dict[str, Any] = {"batch": int(inp["shape"][0])}

    def predict(x: np.ndarray) -> np.ndarray:
        if x.shape[0] != state["batch"]:
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
            state["batch"] = x.shape[0]
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if np.issubdtype(y.dtype, np.integer) and out_scale:
            return (y.astype(np.float32) - out_zero) * out_scale  # int8 logits back to float
        return y.astype(np.float32, copy=False)

    return predict


# LiteRT's native code prints this INFO line on stderr the first time a process applies XNNPACK:
# noise on `edgebench ab`'s console, and a misleading last line of a worker that dies silently later.
XNNPACK_NOTICE = "Created TensorFlow Lite XNNPACK delegate"


@contextlib.contextmanager
def without_xnnpack_notice() -> Iterator[None]:
    """Capture file descriptor 2 (native code writes there, not to sys.stderr) for the block, then
    pass on every line except LiteRT's XNNPACK notice, so its real errors still reach the user.

    For interactive commands only: a native crash inside the block loses what it printed, so the
    measurement worker (whose stderr its parent reads) is not wrapped; bench.measure filters instead."""
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if XNNPACK_NOTICE.encode() not in line]
            if kept:
                os.write(2, b"".join(kept))


_LOADERS: dict[str, Callable[[Path, int, str], Predict]] = {
    "torch": _load_torch, "onnxruntime": _load_onnxruntime, "litert": _load_litert,
}


def load(runtime: str, artifact: str | Path, threads: int, device: str = "cpu") -> Predict:
    """Load an artifact on a runtime with an explicit thread count and device."""
    return _LOADERS[runtime](Path(artifact), threads, device)
