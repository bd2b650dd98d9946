"""TFLite conversion (bench.export_tflite) on the tiny CNN: every precision converts, loads on the
LiteRT runtime at batch 1/32/256 through its input_spec, and the fp32 model matches ONNX Runtime.

The conversion runs once per module (importing TensorFlow alone takes seconds on 2 cores).
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import runtimes
from bench.data import read_idx
from bench.export import ExportError, export_onnx
from bench.inputs import make_input_spec, prepare_input
from bench.zoo import tinycnn
from tests.conftest import DEBIAN_DATA

pytestmark = pytest.mark.tflite

PRECISIONS = ["fp32", "fp16", "int8-dynamic", "int8"]
MEAN, STD = (0.286,), (0.353,)
NCHW = make_input_spec((1, 28, 28), MEAN, STD)
NHWC = make_input_spec((1, 28, 28), MEAN, STD, layout="NHWC")


@pytest.fixture(scope="module")
def tflite_stack() -> None:
    """Skip (with the reason) where the optional tflite extra is not installed.

    find_spec, not importorskip: importing tensorflow here, before bench.export_tflite gets to load
    triton first, would make the next torch step segfault (see _load_triton_before_tensorflow).
    """
    for module in ("tensorflow", "onnx2tf", "ai_edge_litert"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} missing: pip install 'edgebench[tflite]'")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Raw uint8 NCHW images and labels: real Fashion-MNIST test images when present, else random."""
    if (DEBIAN_DATA / "t10k-images-idx3-ubyte.gz").exists():
        return (np.ascontiguousarray(read_idx(DEBIAN_DATA / "t10k-images-idx3-ubyte.gz")[:512, None]),
                read_idx(DEBIAN_DATA / "t10k-labels-idx1-ubyte.gz")[:512].astype(np.int64))
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (512, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 512)


@pytest.fixture(scope="module")
def images(data: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return data[0]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> Path:
    """tinycnn after 30 training steps (~4 s). Why train: at random init its logits barely depend on
    the input (every image gets the same class), so agreement checks would pass for any input."""
    torch.manual_seed(0)
    model = tinycnn()
    x, y = torch.from_numpy(prepare_input(data[0], NCHW)), torch.from_numpy(data[1].astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        batch = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return export_onnx(model.eval(), tmp_path_factory.mktemp("tflite") / "tinycnn.fp32.onnx", (1, 28, 28))


@pytest.fixture(scope="module")
def converted(tflite_stack: None, onnx_model: Path, images: np.ndarray) -> dict:
    from bench.export_tflite import convert_to_tflite

    digest = hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    out = onnx_model.parent
    results = convert_to_tflite(onnx_model, out, PRECISIONS, prepare_input(images[:128], NCHW), NHWC,
                                out / "logs" / "tflite-tinycnn.log")
    # onnx2tf simplifies its input file in place; the exporter must only ever hand it a copy
    assert hashlib.sha256(onnx_model.read_bytes()).hexdigest() == digest
    return results


@pytest.fixture(scope="module")
def onnx_logits(onnx_model: Path, images: np.ndarray) -> np.ndarray:
    return runtimes.load("onnxruntime", onnx_model, threads=1)(prepare_input(images, NCHW))


def _run(path: Path, spec: dict, images: np.ndarray) -> np.ndarray:
    """Logits through the LiteRT runtime, switching batch sizes the way the benchmark does."""
    predict = runtimes.load("litert", path, threads=1)
    x = prepare_input(images, spec)
    single = predict(x[:1])
    logits = np.concatenate([predict(x[:256]), predict(x[256:288]), predict(x[288:])])
    np.testing.assert_allclose(single, logits[:1], atol=1e-6)  # same answer after resizing
    return logits


@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_precision_converts_and_runs(converted, images, onnx_logits, precision):
    outcome = converted[precision]
    assert not isinstance(outcome, ExportError), outcome
    path, spec, info = outcome
    assert path.name == f"tinycnn.{precision}.tflite" and path.is_file()
    assert spec["layout"] == "NHWC" and spec["shape"] == ["N", 28, 28, 1]
    assert info["converter"] == "onnx2tf->TFLiteConverter"
    assert info["transposes"] == 0  # channels-last graph, and the avg-pool+flatten rewrite applied
    logits = _run(path, spec, images)
    assert logits.shape == (len(images), 10) and np.isfinite(logits).all()
    agreement = (logits.argmax(1) == onnx_logits.argmax(1)).mean()
    assert agreement >= (1.0 if precision == "fp32" else 0.9), agreement


def test_fp32_matches_onnxruntime(converted, images, onnx_logits):
    path, spec, _ = converted["fp32"]
    assert np.abs(_run(path, spec, images) - onnx_logits).max() <= 1e-4


def test_int8_input_quantization_follows_spec(converted, images):
    from ai_edge_litert.interpreter import Interpreter

    path, spec, info = converted["int8"]
    detail = Interpreter(model_path=str(path)).get_input_details()[0]
    scale, zero_point = detail["quantization"]
    assert detail["dtype"] == np.int8 and spec["dtype"] == "int8"
    assert spec["quantization"] == {"scale": pytest.approx(scale), "zero_point": zero_point}
    assert info["inference_input_type"] == "int8" and info["calibration_images"] == 128
    x = prepare_input(images[:8], spec)
    assert x.dtype == np.int8 and x.shape == (8, 28, 28, 1)
    # prepare_input's int8 tensor is the float NHWC input quantized with the interpreter's own params
    expected = np.clip(np.round(prepare_input(images[:8], NHWC) / scale) + zero_point, -128, 127)
    np.testing.assert_array_equal(x, expected.astype(np.int8))
    # the spec's float (NCHW) spec is left as it was: each precision gets its own copy
    assert NHWC["quantization"] is None and converted["fp32"][1]["quantization"] is None


def test_console_noise_goes_to_log(converted, onnx_model):
    log = onnx_model.parent / "logs" / "tflite-tinycnn.log"
    assert log.is_file() and log.stat().st_size > 0


def test_native_console_output_lands_in_the_log_not_on_the_terminal(tmp_path, capfd):
    import os

    from bench.export_tflite import _console_to

    with _console_to(tmp_path / "converter.log"):  # what the converters run inside
        os.write(1, b"native stdout\n")  # C++ logging writes straight to the file descriptors
        os.write(2, b"native stderr\n")
        print("python stdout")
        print("python stderr", file=sys.stderr)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    log = (tmp_path / "converter.log").read_text()
    assert all(text in log for text in ("native stdout", "native stderr", "python stdout", "python stderr"))


def test_logging_handlers_made_during_a_conversion_do_not_outlive_its_log_file(tmp_path, capfd):
    """A converter that calls logging.basicConfig inside _console_to left a root handler on the closed
    log file: every later edgebench log line then printed a "--- Logging error ---" traceback."""
    import logging

    from bench.export_tflite import _console_to

    root_before = list(logging.root.handlers)
    library = logging.getLogger("edgebench-test-library")
    try:
        with _console_to(tmp_path / "converter.log"):
            logging.root.addHandler(logging.StreamHandler(sys.stderr))  # what logging.basicConfig() adds
            library.addHandler(logging.StreamHandler(sys.stderr))  # a library's own handler, like TensorFlow's
            library.warning("during the conversion")
        assert logging.root.handlers == root_before
        logging.getLogger("edgebench").warning("after the conversion")
        library.warning("library line after the conversion")
        out, err = capfd.readouterr()
        assert "Logging error" not in err and "library line after the conversion" in err
        assert "during the conversion" in (tmp_path / "converter.log").read_text()
    finally:
        library.handlers.clear()
        logging.root.handlers[:] = root_before


def test_corrupt_onnx_fails_every_precision(tflite_stack, tmp_path, images):
    from bench.export_tflite import convert_to_tflite

    bad = tmp_path / "broken.fp32.onnx"
    bad.write_bytes(b"this is not a protobuf")
    results = convert_to_tflite(bad, tmp_path, PRECISIONS, prepare_input(images[:4], NCHW), NHWC,
                                tmp_path / "logs" / "t.log")
    assert set(results) == set(PRECISIONS)
    for outcome in results.values():
        assert isinstance(outcome, ExportError) and "\n" not in str(outcome)
    assert not list(tmp_path.glob("*.tflite"))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".onnx2tf")] == []  # temp dir removed


def test_a_node_onnx2tf_cannot_convert_is_named_in_the_reason(tflite_stack, tmp_path, images):
    """GroupNorm exports as InstanceNormalization on a reshaped tensor, which onnx2tf 1.28 fails on:
    the reason names that node, read from onnx2tf's own error lines in the log."""
    from bench.export_tflite import convert_to_tflite

    class GroupNormNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.norm, self.head = torch.nn.Conv2d(1, 8, 3), torch.nn.GroupNorm(2, 8), torch.nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.norm(self.conv(x)).mean(dim=(2, 3)))

    onnx_path = export_onnx(GroupNormNet().eval(), tmp_path / "gn.fp32.onnx", (1, 28, 28))
    (tmp_path / "t.log").write_text("onnx_op_name: /an/earlier/conversion\n")  # another model's lines: not this one's
    results = convert_to_tflite(onnx_path, tmp_path, ["fp32"], prepare_input(images[:4], NCHW), NHWC, tmp_path / "t.log")
    assert "(onnx2tf) failed at InstanceNormalization node /norm/InstanceNormalization: " in str(results["fp32"])


def test_one_failing_precision_leaves_the_others(tflite_stack, onnx_model, tmp_path):
    from bench.export_tflite import convert_to_tflite

    empty = np.zeros((0, 1, 28, 28), np.float32)  # full-int8 cannot calibrate on nothing
    results = convert_to_tflite(onnx_model, tmp_path, ["int8", "fp32"], empty, NHWC, tmp_path / "t.log")
    assert isinstance(results["int8"], ExportError) and "calibration" in str(results["int8"])
    assert results["fp32"][0].is_file()


def test_torch_still_works_after_conversion(tflite_stack, tmp_path):
    """Regression: with TF >= 2.20, `import triton` after tensorflow segfaults, and torch imports
    triton lazily. Runs in a fresh process, since this one may have loaded triton already."""
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton not installed: nothing to clash with")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    script = ("import sys, numpy as np; from pathlib import Path; from bench.export_tflite import convert_to_tflite; "
              "from bench.inputs import make_input_spec; "
              "d = Path(sys.argv[1]); convert_to_tflite(d / 'bad.onnx', d, ['fp32'], np.zeros((1, 1, 28, 28), np.float32), "
              "make_input_spec((1, 28, 28), (0.5,), (0.5,), layout='NHWC'), d / 't.log'); "
              "assert 'tensorflow' in sys.modules; import triton; print('alive')")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == 0 and "alive" in done.stdout, done.stderr[-2000:]


def test_a_failed_conversion_is_an_export_failed_row_and_the_other_formats_go_on(tflite_stack, run_context, monkeypatch):
    """The whole path from a converter failure to the rows: onnx2tf cannot read the (forced) corrupt
    ONNX file, so every TFLite cell becomes an export_failed row with the converter's message."""
    from bench import cells
    from bench.variants import Variant

    ctx = run_context(["torch", "onnx", "tflite"], ["torch", "onnxruntime", "litert"], PRECISIONS, size=28)

    def corrupt_onnx(_model, path, *_args):
        path.write_bytes(b"this is not a protobuf")
        return path

    monkeypatch.setattr(cells, "export_onnx", corrupt_onnx)
    variant = Variant("broken", tinycnn().eval(), ["finetune(epochs=0)"])
    artifacts = cells.export_artifacts(variant, ctx, np.zeros((8, 1, 28, 28), np.uint8))
    rows = [row for artifact in artifacts for row in cells.rows_for_artifact(variant, artifact, ctx)]
    assert [(r.format, r.precision, r.status) for r in rows] == [
        ("torch", "fp32", "ok"), ("onnx", "fp32", "ok")] + [("tflite", p, "export_failed") for p in PRECISIONS]
    for row in rows[2:]:
        assert row.runtime == "litert" and row.artifact is None and "\n" not in row.reason
        assert "(onnx2tf) failed: DecodeError" in row.reason  # the converter's own words


def test_the_conversion_leaves_the_recursion_limit_as_it_was(converted):
    """onnx2tf raises it to 2**31-1 on import; left there, a deeply nested results.json read later in
    the same process would overflow the C stack (a segfault) instead of raising RecursionError."""
    import sys

    assert sys.getrecursionlimit() < 100_000
