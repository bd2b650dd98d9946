"""Runtime loaders: what `predict` returns must not depend on how the runtime is called."""

import os

import numpy as np
import onnxruntime as ort
import torch

from bench.export import export_onnx
from bench import runtimes
from bench.runtimes import load, without_xnnpack_notice
from bench.zoo import tinycnn

SHAPE = (1, 28, 28)


def test_onnxruntime_predict_through_iobinding_matches_session_run(tmp_path):
    torch.manual_seed(0)
    path = export_onnx(tinycnn().eval(), tmp_path / "m.onnx", SHAPE)
    predict = load("onnxruntime", path, threads=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    outputs = []
    for batch in (1, 1, 1, 3, 3, 3, 1, 5):  # repeated shapes reuse the binding, new ones rebind
        x = rng.standard_normal((batch, *SHAPE)).astype(np.float32)
        outputs.append((predict(x), session.run(None, {"input": x})[0]))
    # every result still holds its own logits after later calls through the same binding
    for got, expected in outputs:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.shares_memory(outputs[1][0], outputs[2][0])
    x = rng.standard_normal((4, *SHAPE)).astype(np.float32)[:, :, ::-1, :]  # a non-contiguous view
    np.testing.assert_allclose(predict(x), session.run(None, {"input": np.ascontiguousarray(x)})[0], rtol=1e-5, atol=1e-6)


def test_torch_predict_keeps_its_thread_count_after_another_load(tmp_path):
    """torch's thread count is per process: the worker loads a second copy on every core to
    compute predictions; the copy timed at 1 thread must still run at 1 thread afterwards."""
    from bench.export import export_torch

    saved = torch.get_num_threads()
    try:
        path = export_torch(tinycnn().eval(), tmp_path / "m.pt2", SHAPE)
        timed = load("torch", path, threads=1)
        evaluate = load("torch", path, threads=2)
        x = np.zeros((2, *SHAPE), np.float32)
        evaluate(x)
        assert torch.get_num_threads() == 2
        assert len([k for k in runtimes._TORCH_MODULES if k[0] == str(path.resolve())]) == 1  # loaded once
        timed(x)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(saved)


def test_litert_xnnpack_notice_is_dropped_and_everything_else_on_fd2_passes(capfd):
    with without_xnnpack_notice():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: Didn't find op for builtin opcode 'CONV_2D'\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "ERROR: Didn't find op for builtin opcode 'CONV_2D'\nafter\n"
