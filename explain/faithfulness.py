"""Faithfulness of attributions: the deletion curve and its area.

Delete the most-attributed pixels first, in equal steps, replacing them the way the SHAP masker
hides pixels (so "deleted" means the same thing to the metric as to the explainer), and follow
the model's probability of the explained class. A faithful explanation makes it fall fast: a
low area under the curve. The area of a seeded random deletion order is the reference.

The area is the trapezoid over the deleted fraction 0..1 of a probability in 0..1, so it is
already normalised to [0, 1].
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from explain.shap_explain import DEFAULT_MASKER, Proba, make_masker, masked_image

DEFAULT_STEPS = 20


def deletion_order(values: np.ndarray) -> np.ndarray:
    """Pixel locations (flat H*W indices) from most to least attributed; ties by position."""
    v = np.asarray(values, dtype=np.float64)
    per_location = v.sum(axis=-1) if v.ndim == 3 else v
    return np.argsort(-per_location.ravel(), kind="stable")


def deletion_images(image: np.ndarray, order: np.ndarray, masker: Any, steps: int) -> np.ndarray:
    """steps + 1 images: 0, 1/steps, ..., all of the locations in `order` deleted."""
    h, w, c = image.shape
    out = np.empty((steps + 1, h, w, c), dtype=np.float64)
    for s in range(steps + 1):
        removed = order[: int(round(s * order.size / steps))]
        keep = np.ones(h * w, dtype=bool)
        keep[removed] = False
        keep_hwc = np.repeat(keep.reshape(h, w, 1), c, axis=2)
        out[s] = masked_image(masker, keep_hwc, image)
    return out


def curve_area(curve: np.ndarray) -> float:
    """Trapezoid area of a curve sampled at equal steps over [0, 1]."""
    y = np.asarray(curve, dtype=np.float64)
    return float(((y[:-1] + y[1:]) / 2).sum() / (len(y) - 1))


def deletion_scores(proba: Proba, images: np.ndarray, values: np.ndarray, classes: Sequence[int], *,
                    masker: str = DEFAULT_MASKER, steps: int = DEFAULT_STEPS, seed: int = 0) -> dict[str, Any]:
    """Deletion curves (N, steps + 1) and areas for attributions of `images`, plus a random-order reference.

    Returns {"curves": array, "random_curves": array, "auc": [...], "random_auc": [...]}; one model
    call per image and order, so the cost is 2 * (steps + 1) evaluations per image.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.shape != np.asarray(values).shape:
        raise ValueError(f"images {images.shape} and attributions {np.asarray(values).shape} differ in shape")
    image_masker = make_masker(masker, images.shape[1:])
    rng = np.random.default_rng(seed)
    h, w = images.shape[1:3]
    curves = np.zeros((len(images), steps + 1))
    random_curves = np.zeros((len(images), steps + 1))
    for i, (image, v, cls) in enumerate(zip(images, values, classes)):
        for target, order in ((curves, deletion_order(v)), (random_curves, rng.permutation(h * w))):
            target[i] = np.asarray(proba(deletion_images(image, order, image_masker, steps)), dtype=np.float64)[:, int(cls)]
    return {"curves": curves, "random_curves": random_curves,
            "auc": [curve_area(c) for c in curves], "random_auc": [curve_area(c) for c in random_curves]}


def summary(scores: dict[str, Any], steps: int = DEFAULT_STEPS) -> dict[str, Any]:
    """The JSON block of deletion scores (areas aggregated; curves stay in their .npy file)."""
    auc, rnd = np.asarray(scores["auc"]), np.asarray(scores["random_auc"])
    return {"metric": "deletion AUC (probability of the explained class vs fraction of pixels deleted; lower = more faithful)",
            "steps": steps, "auc": {"mean": float(auc.mean()), "min": float(auc.min()), "max": float(auc.max())},
            "random_auc": {"mean": float(rnd.mean())},
            "beats_random": float((auc < rnd).mean()),  # share of images where the SHAP order deletes faster
            "per_image_auc": [round(float(a), 6) for a in auc]}
