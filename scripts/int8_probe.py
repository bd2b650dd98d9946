"""Does full-int8 pay on this CPU? Time fp32 vs int8 TFLite on the three kinds of layer a small CNN has.

    .venv/bin/python scripts/int8_probe.py [--threads 1] [--calls 3000]

Builds, with random weights, the layer shapes of the default `edgecnn` as three separate TFLite
models: the 1-channel stem (3x3 conv 1->24 at 28x28 + max-pool), the conv body (two 3x3 48-channel
convs at 14x14, max-pool, 3x3 48->64 at 7x7) and the head (7x7 conv 64->10 + mean, a matrix-vector
product). Each is converted to float32 and to full-integer int8 and timed on the LiteRT interpreter
(XNNPACK, batch 1). The ratio column says how much faster int8 is.

Why this exists: on CPUs without VNNI, XNNPACK's int8 convolution kernels widen int8 to int16
before multiplying, so convolutions gain little from int8, and a 1-channel stem loses (its int8
GEMM has K=9 and is all overhead); only memory-bound layers (the head) gain the 2-4x that int8
promises. The benchmark's TFLite int8 row for the whole model is the sum of these effects.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from typing import Iterator

import numpy as np


def _build(kind: str):  # noqa: ANN202 - a Keras model
    import tensorflow as tf

    layers = tf.keras.layers

    def conv(x, channels: int):  # noqa: ANN001, ANN202
        return layers.ReLU()(layers.Conv2D(channels, 3, padding="same")(x))

    if kind == "stem":
        inp = layers.Input((28, 28, 1), batch_size=1)
        out = layers.MaxPool2D()(conv(inp, 24))
    elif kind == "body":
        inp = layers.Input((14, 14, 24), batch_size=1)
        out = conv(layers.MaxPool2D()(conv(conv(inp, 48), 48)), 64)
    else:  # head
        inp = layers.Input((7, 7, 64), batch_size=1)
        out = layers.GlobalAveragePooling2D()(layers.Conv2D(10, 7)(inp))
    return tf.keras.Model(inp, out)


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    """The converter prints pages of native log lines on fds 1 and 2; keep the table readable."""
    sys.stdout.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _convert(model, int8: bool) -> bytes:  # noqa: ANN001
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        shape = model.input_shape[1:]
        rng = np.random.default_rng(0)

        def representative():  # noqa: ANN202
            for _ in range(64):
                yield [rng.random((1, *shape), dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _p50_ms(flatbuffer: bytes, threads: int, calls: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    x = np.zeros(detail["shape"], detail["dtype"])
    for _ in range(max(100, calls // 10)):  # warm-up
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--calls", type=int, default=3000, help="timed calls per model (default 3000)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _silenced():
        import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    print(f"{'block':6s}  {'fp32 p50 ms':>11s}  {'int8 p50 ms':>11s}  {'int8 speed-up':>13s}")
    for kind in ("stem", "body", "head"):
        model = _build(kind)
        with _silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flatbuffers = [_convert(model, q) for q in (False, True)]
        fp32, int8 = (_p50_ms(fb, args.threads, args.calls) for fb in flatbuffers)
        print(f"{kind:6s}  {fp32:11.4f}  {int8:11.4f}  {fp32 / int8:12.2f}x")


if __name__ == "__main__":
    main()
