"""The input contract of an artifact (`input_spec`) and the one function that applies it.

Every runtime worker feeds raw uint8 pixels through `prepare_input(raw, spec)`; nothing else
knows how a model wants its input. So a spec that runs here runs anywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def make_input_spec(shape_chw: tuple[int, int, int], mean: tuple[float, ...], std: tuple[float, ...], *,
                    layout: str = "NCHW", dtype: str = "float32", quantization: dict[str, float] | None = None) -> dict[str, Any]:
    """Describe how raw uint8 pixels become the artifact's input tensor.

    Recipe: x = raw * pixel_scale; x = (x - mean) / std (per channel); arrange as `layout`;
    if `quantization` is set: x = round(x / scale) + zero_point, clipped to the dtype's range.
    """
    c, h, w = shape_chw
    shape = ["N", c, h, w] if layout == "NCHW" else ["N", h, w, c]
    return {
        "layout": layout,
        "dtype": dtype,
        "shape": shape,
        "pixel_scale": 1 / 255,
        "mean": list(mean),
        "std": list(std),
        "quantization": quantization,
        "recipe": "x = raw_uint8 * pixel_scale; x = (x - mean) / std per channel; arrange as layout; "
                  "if quantization: x = clip(round(x / scale) + zero_point)",
    }


def prepare_input(raw_nchw: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Apply an input_spec to raw uint8 images (N, C, H, W)."""
    mean = np.asarray(spec["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], dtype=np.float32).reshape(1, -1, 1, 1)
    x = (raw_nchw.astype(np.float32) * np.float32(spec["pixel_scale"]) - mean) / std
    if spec["layout"] == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    quant = spec.get("quantization")
    if quant:
        info = np.iinfo(np.dtype(spec["dtype"]))
        x = np.clip(np.round(x / quant["scale"]) + quant["zero_point"], info.min, info.max)
    return np.ascontiguousarray(x.astype(spec["dtype"]))
