"""Does full-int8 pay on this CPU? Time fp32 vs int8 TFLite, one block or layer kind at a time.

    .venv/bin/python scripts/int8_probe.py [--threads 1] [--calls 3000] [--blocks stem,body,...] [--no-xnnpack]
    .venv/bin/python scripts/int8_probe.py --files FP32.tflite INT8.tflite [--no-xnnpack]   # a run's artifacts

Builds, with random weights, separate small TFLite models. First the blocks of the default
`edgecnn`: the 1-channel stem (3x3 conv 1->24 at 28x28 + max-pool), the conv body (two 3x3
48-channel convs at 14x14, max-pool, 3x3 48->64 at 7x7) and the head (7x7 conv 64->10 + mean, a
matrix-vector product). Two convs on the stem's 28x28 grid tell whether int8's cost follows the
channels or the pixels: 1->8 channels, and 16->24. Then the layer kinds other CNNs are made of, sized so that compute
dominates: a 3x3 conv 64->64 at 28x28, a 1x1 conv 256->256 at 14x14, a 3x3 depthwise conv over
128 channels at 14x14, and a dense layer 1568->128->10. Last, a whole textbook CNN of 84K
parameters (3x3 conv 1->16 at 28x28, max-pool, 3x3 conv 16->32 at 14x14, max-pool, dense
1568->50->10), most of them in its dense layer, where edgecnn's sit mostly in convolutions, and
edgecnn itself (stem, body and head in one model; no batch-norm, which TFLite folds anyway).
Each is converted to float32 and to full-integer int8 and timed on the LiteRT interpreter
(XNNPACK, batch 1; `--no-xnnpack`: TFLite's own kernels instead). The ratio column says how much
faster int8 is.

Why this exists: on CPUs without VNNI, XNNPACK's int8 convolution kernels widen int8 to int16
before multiplying, so convolutions gain little from int8, and a 1-channel stem loses (its int8
GEMM has K=9 and is all overhead); only memory-bound layers (the head, dense layers) gain the
2-4x that int8 promises. If the generic conv rows stay near 1x too, no convolutional network will
reach a large int8 speed-up on this CPU. With AMX (measured on a Xeon with AMX-INT8), XNNPACK's
int8 convs are fast on wide layers but cost about the same per output pixel whatever the channels:
1->8, 1->24 and 16->24 channels at 28x28 all took about 30 us in int8, against 6, 10 and 78 us in
fp32, so narrow layers on a large grid lose. The benchmark's TFLite int8 row for the whole model is
the sum of these effects.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np


BLOCKS = ("stem", "body", "head", "conv1to8", "conv16to24", "conv3x3", "conv1x1", "depthwise", "dense", "classic", "edgecnn")


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
    elif kind == "head":
        inp = layers.Input((7, 7, 64), batch_size=1)
        out = layers.GlobalAveragePooling2D()(layers.Conv2D(10, 7)(inp))
    elif kind == "edgecnn":
        inp = layers.Input((28, 28, 1), batch_size=1)
        x = conv(layers.MaxPool2D()(conv(conv(layers.MaxPool2D()(conv(inp, 24)), 48), 48)), 64)
        out = layers.GlobalAveragePooling2D()(layers.Conv2D(10, 7)(x))
    elif kind in ("conv1to8", "conv16to24"):  # the stem's 28x28 grid with fewer outputs, or more inputs
        inputs, outputs = (1, 8) if kind == "conv1to8" else (16, 24)
        inp = layers.Input((28, 28, inputs), batch_size=1)
        out = conv(inp, outputs)
    elif kind == "conv3x3":
        inp = layers.Input((28, 28, 64), batch_size=1)
        out = conv(inp, 64)
    elif kind == "conv1x1":
        inp = layers.Input((14, 14, 256), batch_size=1)
        out = layers.ReLU()(layers.Conv2D(256, 1)(inp))
    elif kind == "depthwise":
        inp = layers.Input((14, 14, 128), batch_size=1)
        out = layers.ReLU()(layers.DepthwiseConv2D(3, padding="same")(inp))
    elif kind == "dense":
        inp = layers.Input((1568,), batch_size=1)
        out = layers.Dense(10)(layers.ReLU()(layers.Dense(128)(inp)))
    elif kind == "classic":  # a whole textbook CNN whose parameters sit in its dense layer
        inp = layers.Input((28, 28, 1), batch_size=1)
        x = layers.MaxPool2D()(conv(layers.MaxPool2D()(conv(inp, 16)), 32))
        out = layers.Dense(10)(layers.ReLU()(layers.Dense(50)(layers.Flatten()(x))))
    else:
        raise ValueError(f"unknown block {kind!r}; expected one of {', '.join(BLOCKS)}")
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


def _p50_ms(flatbuffer: bytes, threads: int, calls: int, xnnpack: bool = True) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # BUILTIN_WITHOUT_DEFAULT_DELEGATES: the same model on TFLite's own kernels, XNNPACK not applied
    resolver = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreter = Interpreter(model_content=flatbuffer, num_threads=threads, **resolver)
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
    parser.add_argument("--blocks", default=",".join(BLOCKS),
                        help=f"comma-separated blocks to time (default: all of {','.join(BLOCKS)})")
    parser.add_argument("--no-xnnpack", action="store_true", help="time TFLite's own kernels instead of XNNPACK")
    parser.add_argument("--files", nargs=2, metavar=("FP32", "INT8"),
                        help="time these two .tflite files (e.g. a run's artifacts) instead of the built blocks")
    args = parser.parse_args()
    blocks = [b.strip() for b in args.blocks.split(",") if b.strip()]
    unknown = [b for b in blocks if b not in BLOCKS]
    if unknown or not blocks:
        parser.error(f"--blocks: unknown block(s) {unknown or args.blocks!r}; expected some of {','.join(BLOCKS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    header = f"{'block':10s}  {'fp32 p50 ms':>11s}  {'int8 p50 ms':>11s}  {'int8 speed-up':>13s}"
    if args.files:
        try:
            flatbuffers = [Path(f).read_bytes() for f in args.files]
        except OSError as exc:
            parser.error(f"--files: cannot read {exc.filename}: {exc.strerror}")
        fp32, int8 = (_p50_ms(fb, args.threads, args.calls, xnnpack=not args.no_xnnpack) for fb in flatbuffers)
        print(header)
        print(f"{'files':10s}  {fp32:11.4f}  {int8:11.4f}  {fp32 / int8:12.2f}x")
        return
    with _silenced():
        import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    print(header)
    for kind in blocks:
        model = _build(kind)
        with _silenced(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            flatbuffers = [_convert(model, q) for q in (False, True)]
        fp32, int8 = (_p50_ms(fb, args.threads, args.calls, xnnpack=not args.no_xnnpack) for fb in flatbuffers)
        print(f"{kind:10s}  {fp32:11.4f}  {int8:11.4f}  {fp32 / int8:12.2f}x")


if __name__ == "__main__":
    main()
