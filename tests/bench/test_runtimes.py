"""Runtime loaders: what `predict` returns must not depend on how the runtime is called."""

import numpy as np
import onnxruntime as ort
import torch

from bench.export import export_onnx
from bench.runtimes import load
from bench.zoo import tinycnn

SHAPE = (1, 28, 28)


def test_onnxruntime_predict_through_iobinding_matches_session_run(tmp_path):
    torch.manual_seed(0)
    path = export_onnx(tinycnn().eval(), tmp_path / "m.onnx", SHAPE)
    predict = load("onnxruntime", path, threads=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    outputs = []
    for batch in (1, 1, 3, 3, 1, 5):  # repeated shapes reuse the binding, new ones rebind
        x = rng.standard_normal((batch, *SHAPE)).astype(np.float32)
        y = predict(x)
        np.testing.assert_allclose(y, session.run(None, {"input": x})[0], rtol=1e-5, atol=1e-6)
        outputs.append(y)
    # each call returns its own array: the bound output buffer is overwritten by the next call
    assert not np.shares_memory(outputs[0], outputs[1])
    assert not np.allclose(outputs[0], outputs[1])
    x = rng.standard_normal((4, *SHAPE)).astype(np.float32)[:, :, ::-1, :]  # a non-contiguous view
    np.testing.assert_allclose(predict(x), session.run(None, {"input": np.ascontiguousarray(x)})[0], rtol=1e-5, atol=1e-6)
