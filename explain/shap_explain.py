"""SHAP attributions of a black-box classifier, in a common pixel space.

The model is any `proba(images) -> probabilities` callable over float (N, H, W, C) pixels in
0..255, so a torch, ONNX Runtime or LiteRT artifact (fp32 or int8) is explained as deployed: the
caller wraps its own runtime's predict with its input recipe and a softmax.

The explainer is shap's Partition explainer (Owen values over an axis-aligned hierarchy of
pixels) with an Image masker that hides a pixel group by replacing it with a blurred (or
inpainted) version of the same image: no background data set is needed, and every variant is
explained against exactly the same masking.

>>> import numpy as np
>>> proba = lambda x: np.stack([x.mean((1, 2, 3)) / 255, 1 - x.mean((1, 2, 3)) / 255], axis=1)
>>> out = explain_images(proba, np.full((1, 8, 8, 1), 200.0), [0], max_evals=64)
>>> out.values.shape
(1, 8, 8, 1)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

Proba = Callable[[np.ndarray], np.ndarray]  # (N, H, W, C) float pixels -> (N, K) probabilities

DEFAULT_MASKER = "blur(10,10)"  # on 28x28 images a 10-pixel box blur removes shape, keeps brightness
DEFAULT_BATCH_SIZE = 50  # masked images per model call: fewer, larger calls amortise runtime overhead


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: max subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


MAX_BLUR_KERNEL = 1024


def masker_problem(spec: str) -> str | None:
    """Why `spec` is not a masker shap's Image masker accepts, or None: checked when a config is read."""
    if spec in ("inpaint_telea", "inpaint_ns"):
        return None
    blur = re.fullmatch(r"blur\((\d+),\s*(\d+)\)", spec)
    if blur is None:
        return "expected 'blur(kx,ky)' with two kernel sizes, 'inpaint_telea' or 'inpaint_ns'"
    # OpenCV refuses kernels past its int range only when it blurs; far beyond any image is a typo
    return None if all(1 <= int(k) <= MAX_BLUR_KERNEL for k in blur.groups()) else f"blur kernel sizes must be in 1..{MAX_BLUR_KERNEL}"


def make_masker(spec: str, shape_hwc: tuple[int, int, int]) -> Any:
    """A shap Image masker: "blur(kx,ky)", "inpaint_telea" or "inpaint_ns" over (H, W, C) images."""
    import shap

    if problem := masker_problem(spec):
        raise ValueError(f"unknown masker {spec!r}: {problem}")
    return shap.maskers.Image(spec, tuple(int(s) for s in shape_hwc))


def masked_image(masker: Any, keep: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`image` with the pixels where `keep` is False replaced the way `masker` hides them.

    shap's blur masker caches the blurred image by `id(image)`; an id can be reused by a new
    array once the old one is freed, so the cache is cleared first to never blur a stale image.
    """
    if hasattr(masker, "last_xid"):
        masker.last_xid = None
    out = masker(np.asarray(keep, dtype=bool).ravel(), np.ascontiguousarray(image, dtype=np.float64))
    return np.asarray(out[0], dtype=np.float64).reshape(image.shape)


@dataclass
class Attributions:
    """SHAP values of N images, each for one class, and what the model said about them."""

    values: np.ndarray          # (N, H, W, C) float32: contribution of each pixel to proba[class]
    base_values: np.ndarray     # (N,) proba[class] of the fully masked image
    outputs: np.ndarray         # (N,) proba[class] of the image itself
    probabilities: np.ndarray   # (N, K) proba of each image
    seconds_per_image: list[float]     # wall time of each image's explanation
    cpu_seconds_per_image: list[float]  # CPU time of this process: robust when other jobs share the cores

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)


def explain_images(proba: Proba, images: np.ndarray, classes: Sequence[int], *, masker: str = DEFAULT_MASKER,
                   max_evals: int = 500, batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0,
                   image_ids: Sequence[int] | None = None) -> Attributions:
    """Partition-SHAP values of `proba(images)[i, classes[i]]` for each image.

    `image_ids` (default: positions) seed shap's tie-breaking per image, so the same image gets
    the same exploration order in every call and two identical models give identical values.
    """
    import shap

    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C), got shape {images.shape}")
    if len(classes) != len(images):
        raise ValueError(f"{len(images)} images but {len(classes)} classes")
    ids = list(range(len(images))) if image_ids is None else [int(i) for i in image_ids]
    image_masker = make_masker(masker, images.shape[1:])
    explainer = shap.Explainer(_float64(proba), image_masker, algorithm="partition")
    _densify_masks(explainer)
    values = np.zeros(images.shape, dtype=np.float32)
    base, seconds, cpu = np.zeros(len(images)), [], []
    state = np.random.get_state()  # shap breaks ties with the global RNG; restore it for the caller
    try:
        for i, (image, cls) in enumerate(zip(images, classes)):
            np.random.seed([seed, ids[i]])
            image_masker.last_xid = None  # see masked_image: never reuse another image's blur
            start, start_cpu = time.perf_counter(), time.process_time()
            result = explainer(image[None].copy(), max_evals=max_evals, batch_size=batch_size,
                               outputs=np.array([int(cls)]), silent=True)
            seconds.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
            values[i] = np.asarray(result.values, dtype=np.float32).reshape(images.shape[1:])
            base[i] = float(np.ravel(result.base_values)[0])
    finally:
        np.random.set_state(state)
    probabilities = np.asarray(proba(images), dtype=np.float64)
    outputs = probabilities[np.arange(len(images)), np.asarray(classes, dtype=int)]
    return Attributions(values, base, outputs, probabilities, seconds, cpu)


def _densify_masks(explainer: Any, max_features: int = 20_000) -> None:
    """Swap shap's sparse cluster-mask matrix for a dense bool one on small images.

    Partition reads one row of it per explored node; slicing a scipy CSR matrix costs ~40 us,
    a quarter of the explainer's own time on 28x28 images. A dense row gives the same masks
    (bool += bool is a logical or). Skipped for large images, where the dense matrix would not fit.
    """
    matrix = getattr(explainer, "_mask_matrix", None)
    if matrix is not None and hasattr(matrix, "toarray") and matrix.shape[1] <= max_features:
        explainer._mask_matrix = matrix.toarray().astype(bool)


def _float64(proba: Proba) -> Proba:
    """Partition sums many small differences of outputs: compute them in float64."""
    return lambda x: np.asarray(proba(x), dtype=np.float64)


def save_array(path: Any, array: np.ndarray) -> None:
    """np.save without pickling (the file loads back with allow_pickle=False)."""
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def choose_explanation_set(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` seeded image indices of every class, grouped by class (ascending class, then index).

    >>> choose_explanation_set(np.array([0, 1, 0, 1, 0]), 1, seed=0).tolist()
    [4, 3]
    """
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for cls in np.unique(labels):
        candidates = np.flatnonzero(labels == cls)
        picks.extend(sorted(rng.choice(candidates, size=min(per_class, len(candidates)), replace=False).tolist()))
    return np.asarray(picks, dtype=np.int64)
