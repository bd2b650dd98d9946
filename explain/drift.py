"""Attribution drift: how far a variant's explanations moved from the baseline's on the same images.

Three views of similarity, each per image and aggregated as <metric>_mean and <metric>_min:
- Spearman rank correlation of the pixel attributions (does the ranking of pixels survive?),
- IoU of the top 10 % pixels by |attribution| (do the same pixels matter most?),
- cosine similarity of the attribution vectors (same direction, sign included).

Identical attributions give exactly 1.0 on all three (checked first, not left to rounding).
Multi-channel attributions are summed over channels first, so a "pixel" is a location.

>>> import numpy as np
>>> a = np.random.default_rng(0).normal(size=(3, 8, 8, 1))
>>> m = drift_metrics(a, a)
>>> m["spearman_mean"], m["iou_top10_min"], m["cosine_mean"], m["drifted"]
(1.0, 1.0, 1.0, False)
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("spearman", "iou_top10", "cosine")
TOP_FRACTION = 0.10  # of pixels, for "iou_top10" (the metric's name says 10%: not a setting)
DEFAULT_THRESHOLD = 0.5  # mean Spearman below this flags a drifted variant


def _pixels(values: np.ndarray) -> np.ndarray:
    """(H, W, C) or (H, W) attributions -> flat per-location attributions (float64)."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 3:
        v = v.sum(axis=-1)
    return v.ravel()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); 1.0 when equal, 0.0 when undefined."""
    x, y = _pixels(a), _pixels(b)
    if np.array_equal(x, y):
        return 1.0
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    # A constant attribution map has no ranking: call it uncorrelated rather than NaN (JSON-safe).
    return float(np.clip((rx * ry).sum() / denom, -1.0, 1.0)) if denom > 0 else 0.0


def top_fraction_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the top `fraction` of pixels by |attribution| in a and in b (ties broken by position)."""
    x, y = np.abs(_pixels(a)), np.abs(_pixels(b))
    k = max(1, int(round(fraction * x.size)))
    # A stable sort of -|v| keeps the lowest index first among ties, so equal maps pick equal sets.
    top_x = set(np.argsort(-x, kind="stable")[:k].tolist())
    top_y = set(np.argsort(-y, kind="stable")[:k].tolist())
    return len(top_x & top_y) / len(top_x | top_y)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity; 1.0 when equal (even all-zero), 0.0 when exactly one map is all zero."""
    x, y = _pixels(a), _pixels(b)
    if np.array_equal(x, y):
        return 1.0
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx == 0 or ny == 0:
        return 0.0
    return float(np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))


def image_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """All three similarities of one image's attributions."""
    return {"spearman": spearman(a, b), "iou_top10": top_fraction_iou(a, b, TOP_FRACTION), "cosine": cosine(a, b)}


def drift_metrics(reference: np.ndarray, values: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD,
                  image_ids: list[int] | None = None) -> dict[str, Any]:
    """Per-image and aggregated similarity of `values` to `reference`, both (N, H, W[, C]).

    `drifted` is True when the mean Spearman correlation is below `threshold`.
    """
    reference, values = np.asarray(reference), np.asarray(values)
    if reference.shape != values.shape:
        raise ValueError(f"attribution shapes differ: reference {reference.shape} vs {values.shape}")
    if len(values) == 0:
        raise ValueError("no attributions to compare")
    ids = list(range(len(values))) if image_ids is None else [int(i) for i in image_ids]
    per_image = [{"index": i, **image_metrics(r, v)} for i, r, v in zip(ids, reference, values)]
    block: dict[str, Any] = {}
    for name in METRICS:
        scores = np.array([p[name] for p in per_image])
        block[f"{name}_mean"], block[f"{name}_min"] = float(scores.mean()), float(scores.min())
    block.update({"threshold": {"metric": "spearman_mean", "below": threshold},
                  "drifted": bool(block["spearman_mean"] < threshold),
                  "top_fraction": TOP_FRACTION, "per_image": per_image})
    return block


def choose_flips(flipped_by_row: dict[Any, np.ndarray], limit: int) -> dict[Any, list[int]]:
    """Up to `limit` flipped images per row (in the given row order), preferring images already
    chosen for an earlier row: the baseline explains every chosen image once, so reuse keeps that
    cost small. Ascending indices otherwise, so the choice is deterministic.

    >>> choose_flips({"a": np.array([5, 7, 9]), "b": np.array([1, 2, 9])}, 2)
    {'a': [5, 7], 'b': [1, 2]}
    >>> choose_flips({"a": np.array([5, 7, 9]), "b": np.array([1, 5])}, 1)  # b reuses 5
    {'a': [5], 'b': [5]}
    """
    chosen: set[int] = set()
    out: dict[Any, list[int]] = {}
    for key, flipped in flipped_by_row.items():
        ordered = sorted(int(k) for k in flipped)
        pick = sorted(([k for k in ordered if k in chosen] + [k for k in ordered if k not in chosen])[:max(0, limit)])
        chosen.update(pick)
        out[key] = pick
    return out
