"""TFLite exporter: fp32 ONNX -> onnx2tf (channels-last Keras graph) -> SavedModel -> TFLiteConverter.

One onnx2tf run per ONNX model, then one TFLiteConverter run per precision from the same SavedModel:
  fp32          plain conversion
  fp16          float16 weights (dequantized at load), float32 activations and I/O
  int8-dynamic  int8 weights, float activations quantized on the fly (no calibration data)
  int8          full-integer: int8 weights, activations, input and output, calibrated on `calibration`

Why onnx2tf rather than onnx-tf or a naive NCHW graph: onnx2tf rewrites the graph to NHWC, so the
TFLite model has no Transpose around every convolution (the "layout tax"); its input is NHWC, which
is why TFLite artifacts get an NHWC input_spec. tensorflow and onnx2tf are imported only inside
`convert_to_tflite`: they take seconds to import and are an optional extra (edgebench[tflite]).

Why TFLite's quantization lives here and not beside ONNX Runtime's in compress/ (DESIGN.md puts
artifact-level quantization there): TFLiteConverter quantizes while it converts, from the one
SavedModel this module builds per variant. Each precision is therefore one converter setting of one
conversion, not a pass over a finished artifact, and a `quantize.*`-style pass would have to redo
onnx2tf (seconds, and the bulk of a variant's export time) for every precision.

Example:
    results = convert_to_tflite(Path("run/m.fp32.onnx"), Path("run/m"), ["fp32", "int8"], calib_nchw,
                                make_input_spec((1, 28, 28), mean, std, layout="NHWC"), Path("run/logs/t.log"))
    path, spec, info = results["int8"]  # or an ExportError
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import os
import re
import sys
import tempfile
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import exception_line
from bench.export import ExportError
from bench.onnx_rewrites import fuse_global_pool_flatten

CONVERTER = "onnx2tf->TFLiteConverter"
_CALIBRATION_BATCH = 16  # the SavedModel has a dynamic batch, so calibration may run in batches (faster)


def convert_to_tflite(onnx_path: Path, out_dir: Path, precisions: list[str], calibration: np.ndarray,
                      nhwc_spec: dict[str, Any], log_file: Path) -> dict[str, tuple[Path, dict, dict] | ExportError]:
    """Convert an fp32 ONNX model to one .tflite file per precision.

    `calibration` is float32 NCHW, already normalised (prepare_input with the NCHW spec); it is the
    representative dataset of full-int8. Returns per precision (path, input_spec, info) or the
    ExportError that says why it failed; one precision failing does not stop the others. The
    converters' console output goes to `log_file`, not to the terminal.
    """
    onnx_path, out_dir, log_file = Path(onnx_path), Path(out_dir), Path(log_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    stem = onnx_path.name.removesuffix(".onnx").removesuffix(".fp32")
    results: dict[str, tuple[Path, dict, dict] | ExportError] = {}
    log_start = log_file.stat().st_size if log_file.is_file() else 0  # this conversion's part of the log
    with tempfile.TemporaryDirectory(prefix=".onnx2tf-", dir=out_dir) as tmp, _console_to(log_file):
        _load_triton_before_tensorflow()
        recursion_limit = sys.getrecursionlimit()
        try:
            saved_model, rewrites = _onnx_to_saved_model(onnx_path, Path(tmp))
        # The converter boundary: onnx2tf and TensorFlow raise many unrelated types (and onnx2tf
        # sometimes calls sys.exit); every one of them means "this model did not convert".
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            traceback.print_exc()  # into the variant's TFLite log (the console is redirected there)
            sys.stdout.flush()
            at = _failed_node(log_file, log_start, onnx_path)
            error = ExportError(f"ONNX -> TensorFlow (onnx2tf) failed{at}: {exception_line(exc)}")
            return {precision: error for precision in precisions}
        finally:  # past onnx2tf, runaway recursion (a deeply nested file) must raise, not overflow the C stack
            sys.setrecursionlimit(recursion_limit)
        for precision in precisions:
            path = out_dir / f"{stem}.{precision}.tflite"
            try:
                settings = _convert_precision(saved_model, precision, calibration, path)
                spec = _input_spec(path, nhwc_spec)
                info = {**settings, **_graph_info(path), "onnx_rewrites": rewrites}
            # Same boundary, per precision, so one failing precision leaves the others standing.
            except (Exception, SystemExit) as exc:  # noqa: BLE001
                traceback.print_exc()
                path.unlink(missing_ok=True)
                results[precision] = ExportError(f"TFLite {precision} conversion failed: {exception_line(exc)}")
                continue
            results[precision] = (path, spec, info)
    return results


def _failed_node(log_file: Path, start: int, onnx_path: Path) -> str:
    """' at <op type> node <name>' for the node onnx2tf names in its error lines (its log, from
    `start`), so the row's reason says which operation did not convert; '' when it names none."""
    import onnx

    with open(log_file, "rb") as log:
        log.seek(start)
        names = re.findall(r"onnx_op_name: (\S+)", re.sub(r"\x1b\[[0-9;]*m", "", log.read().decode(errors="replace")))
    if not names:
        return ""
    try:
        op_type = next((n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node if n.name == names[-1]), None)
    except Exception:  # noqa: BLE001 - the reason is a courtesy; the error itself is already known
        op_type = None
    return f" at {op_type} node {names[-1]}" if op_type else f" at node {names[-1]}"


def _load_triton_before_tensorflow() -> None:
    """Import triton (if installed) before TensorFlow is first imported.

    Why: TF >= 2.20 wheels load their library with RTLD_GLOBAL, so an `import triton` *after*
    tensorflow binds triton's LLVM to TF's copy and segfaults (tensorflow/tensorflow#124205). torch
    imports triton lazily (torch.export, torch.compile, even optimizer construction), so without this
    the pipeline process would crash on the first torch step after a TFLite export. Loaded first,
    triton keeps its own LLVM and both coexist. If TF is already loaded it is too late: do nothing.
    """
    if "tensorflow" in sys.modules or "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    import triton  # noqa: F401  (imported for its side effect on the dynamic linker)


def _onnx_to_saved_model(onnx_path: Path, tmp: Path) -> tuple[Path, list[str]]:
    """onnx2tf on a rewritten copy of the model (onnx2tf simplifies its input file in place, and the
    fp32 ONNX is itself a benchmarked artifact), then a SavedModel with a dynamic batch dimension."""
    import onnx
    import onnx2tf
    import tensorflow as tf

    # onnx2tf sets this on its first import only; set it for every conversion alike (the caller restores it)
    sys.setrecursionlimit(2**31 - 1)

    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)  # a clear "not a valid model" instead of an error deep in onnx2tf
    rewrites = fuse_global_pool_flatten(model)
    work_copy = tmp / "model.onnx"
    onnx.save(model, str(work_copy))
    # disable_model_save: onnx2tf would otherwise also write its own fp32/fp16 .tflite files, which
    # takes longer than the conversion; the Keras model it returns is all we need.
    keras_model = onnx2tf.convert(input_onnx_file_path=str(work_copy), output_folder_path=str(tmp / "onnx2tf"),
                                  disable_model_save=True, non_verbose=True, verbosity="error")
    saved_model = tmp / "saved_model"
    tf.saved_model.save(keras_model, str(saved_model))
    return saved_model, rewrites


def _convert_precision(saved_model: Path, precision: str, calibration: np.ndarray, path: Path) -> dict[str, Any]:
    """Run TFLiteConverter for one precision, write `path`, and return the settings used."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    settings: dict[str, Any] = {"converter": CONVERTER, "optimizations": [], "inference_input_type": "float32",
                                "inference_output_type": "float32"}
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        settings.update(optimizations=["DEFAULT"], supported_types=["float16"])
    elif precision == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data = dynamic range
        settings.update(optimizations=["DEFAULT"])
    elif precision == "int8":
        if len(calibration) == 0:
            raise ExportError("full-int8 needs calibration images, got none")
        nhwc = np.ascontiguousarray(np.asarray(calibration, dtype=np.float32).transpose(0, 2, 3, 1))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([nhwc[i:i + _CALIBRATION_BATCH]]
                                                    for i in range(0, len(nhwc), _CALIBRATION_BATCH))
        # BUILTINS_INT8 only: fail rather than silently keep a float op in a "full-integer" model
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        settings.update(optimizations=["DEFAULT"], supported_ops=["TFLITE_BUILTINS_INT8"],
                        inference_input_type="int8", inference_output_type="int8", calibration_images=len(nhwc))
    elif precision != "fp32":
        raise ExportError(f"unknown TFLite precision {precision!r}")
    path.write_bytes(converter.convert())
    return settings


def _interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


def _input_spec(path: Path, nhwc_spec: dict[str, Any]) -> dict[str, Any]:
    """The NHWC spec, plus the input tensor's int8 quantization when the model takes integers."""
    spec = copy.deepcopy(nhwc_spec)
    detail = _interpreter(path).get_input_details()[0]
    dtype = np.dtype(detail["dtype"])
    if np.issubdtype(dtype, np.integer):
        scale, zero_point = detail["quantization"]
        spec.update(dtype=dtype.name, quantization={"scale": float(scale), "zero_point": int(zero_point)})
    return spec


def _graph_info(path: Path) -> dict[str, Any]:
    """Operator census of the TFLite graph; TRANSPOSE count = the NCHW->NHWC layout tax."""
    ops = [op["op_name"] for op in _interpreter(path)._get_ops_details()]  # noqa: SLF001 - no public op list
    return {"transposes": ops.count("TRANSPOSE"), "operators": len(ops)}


@contextlib.contextmanager
def _console_to(log_file: Path) -> Iterator[None]:
    """Send stdout/stderr, including native TensorFlow/absl logging written straight to file
    descriptors 1 and 2, to `log_file` for the duration of the block."""
    # Quiet TF's C++ INFO/WARNING lines; errors still reach the log. Must be set before the import.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    root_handlers = list(logging.root.handlers)
    with open(log_file, "a", encoding="utf-8") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            _release_log_handlers(log, root_handlers)


class _CurrentStderr:
    """Writes to whatever sys.stderr is at the time: the log file inside _console_to, the terminal outside."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _release_log_handlers(log: Any, root_handlers: list[logging.Handler]) -> None:
    """Logging handlers created inside _console_to hold its log file, which is about to be closed.

    A handler a converter added to the root logger (logging.basicConfig) is removed: it would also
    print every edgebench log line to the terminal, and on the closed file each one became a
    "--- Logging error ---" traceback. A library's own handler (TensorFlow's "tensorflow" logger)
    follows sys.stderr from now on, so its lines still go to the next conversion's log file.
    """
    for handler in [h for h in logging.root.handlers if h not in root_handlers]:
        logging.root.removeHandler(handler)
    loggers = [v for v in list(logging.root.manager.loggerDict.values()) if isinstance(v, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is log:
                handler.setStream(_CurrentStderr())
