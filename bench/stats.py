"""Latency statistics from raw per-call samples (and their bootstrap, for comparing runs), and accuracy
statistics from predictions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def latency_stats(samples_ms: np.ndarray) -> dict[str, float | int]:
    """Percentiles (linear interpolation, numpy's default), mean, std (population), min, max in ms.

    >>> latency_stats(np.array([1.0, 2.0, 3.0, 4.0]))["p50"]
    2.5
    """
    s = np.asarray(samples_ms, dtype=np.float64)
    if s.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p95, p99 = np.percentile(s, [50, 90, 95, 99])
    return {"n": int(s.size), "p50": float(p50), "p90": float(p90), "p95": float(p95), "p99": float(p99),
            "mean": float(s.mean()), "std": float(s.std()), "min": float(s.min()), "max": float(s.max())}


# A paired timing (bench.abtest) whose rounds' ratios have a p90 more than 15% above their p10 was
# disturbed: on a quiet machine they lie within a few percent, while a neighbour's burst can pull
# over half the rounds down (seen here: 2.52x [2.22-3.28] in a run, 3.25x [3.22-3.29] re-timed at once).
DISTURBED_P90_OVER_P10 = 1.15
DISTURBED_SPREAD = math.log(DISTURBED_P90_OVER_P10)  # the same limit on ratio_spread
# Fewer rounds than this give a 10-90% range too noisy to judge (--quick times 4 rounds).
PAIRED_MIN_ROUNDS = 10


def ratio_spread(p10_p90: tuple[float, float] | list[float]) -> float:
    """ln(p90 / p10) of a paired timing's round ratios: its relative width, the same whichever
    artifact is the faster one (so judging attempts by it favours neither a high nor a low ratio).

    >>> round(ratio_spread((2.0, 2.2)), 3)
    0.095
    """
    low, high = p10_p90
    return math.log(high / low) if low > 0 and high > 0 else math.inf


def paired_range(paired: Any) -> tuple[float, float] | None:
    """The (p10, p90) of a row's `speedup_paired` block; None when the block or its range is missing or malformed."""
    spread = paired.get("speedup_p10_p90") if isinstance(paired, dict) else None
    if isinstance(spread, list) and len(spread) == 2 and all(isinstance(x, (int, float)) for x in spread):
        return float(spread[0]), float(spread[1])
    return None


def paired_disturbed(paired: Any) -> bool:
    """A row's `speedup_paired` block timed while the machine was busy: its (kept) timing spreads
    over DISTURBED_SPREAD. False when the block is missing or malformed, or has too few rounds to judge."""
    spread = paired_range(paired)
    if spread is None:
        return False
    rounds = paired.get("rounds")
    if isinstance(rounds, int) and rounds < PAIRED_MIN_ROUNDS:
        return False
    return ratio_spread(spread) > DISTURBED_SPREAD


def two_standard_errors(a: float, b: float, n: int) -> float:
    """Two standard errors of the difference of two proportions, each measured on n items (as if
    independent: conservative for two models scored on the same images)."""
    return 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (well-behaved near 0 and 1, unlike the normal one)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def _mean_over(values: np.ndarray, mask: np.ndarray) -> float:
    return float(values[mask].mean()) if mask.any() else 0.0


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                           baseline_predictions: np.ndarray | None = None) -> dict[str, Any]:
    """top-1 with its 95% CI, macro precision/recall/F1, per-class accuracy, confusion matrix, agreement.

    Macro means cover the classes present in the labels or the predictions.
    A prediction of -1 (no valid output, e.g. NaN logits) is wrong in every metric and absent from
    the confusion matrix, whose rows then sum to less than their class's support.
    """
    n = int(labels.size)
    correct = int((labels == predictions).sum())
    valid = predictions >= 0
    cm = confusion_matrix(labels[valid], predictions[valid], num_classes)
    tp = np.diag(cm).astype(np.float64)
    support, predicted = np.bincount(labels, minlength=num_classes)[:num_classes], cm.sum(axis=0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(tp), where=(precision + recall) > 0)
    # macro means over the classes the labels or predictions hold (as scikit-learn does): a class a
    # small test set lacks and no image was predicted as is no evidence of a 0 score
    present = (support > 0) | (predicted > 0)
    result: dict[str, Any] = {
        "top1": correct / n if n else 0.0,
        "n": n,
        "top1_ci95": list(wilson_interval(correct, n)),
        "precision_macro": _mean_over(precision, present),
        "recall_macro": _mean_over(recall, present),
        "f1_macro": _mean_over(f1, present),
        "per_class_top1": [float(r) for r in recall],
        "confusion_matrix": cm.tolist(),
    }
    if baseline_predictions is not None:
        result["agreement_with_baseline"] = float((predictions == baseline_predictions).mean())
    return result


def bootstrap_quantiles(x: np.ndarray, q: float, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The q-quantile (numpy's linear method) of `resamples` bootstrap resamples of x, in O(n log n + resamples).

    A resample is n draws x_sorted[ceil(n * U) - 1] with U uniform, a monotone map, so its k-th
    order statistic is x_sorted at the k-th order statistic of n uniforms, which is Beta(k, n-k+1);
    the next one is U_k + (1 - U_k) * Beta(1, n-k). Exactly the bootstrap distribution, without
    materialising resamples (runs keep tens of thousands of samples per row).
    """
    xs = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = xs.size
    h = (n - 1) * q
    k = int(np.floor(h)) + 1  # 1-based order statistic below the interpolation point
    frac = h - (k - 1)
    u_k = rng.beta(k, n - k + 1, resamples)
    low = xs[np.clip(np.ceil(n * u_k).astype(np.int64) - 1, 0, n - 1)]
    if frac == 0 or k >= n:
        return low
    u_next = u_k + (1 - u_k) * rng.beta(1, n - k, resamples)
    high = xs[np.clip(np.ceil(n * u_next).astype(np.int64) - 1, 0, n - 1)]
    return low + frac * (high - low)


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, q: float = 0.5, resamples: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float, float]:
    """quantile_q(b) / quantile_q(a) with a percentile-bootstrap CI: (ratio, low, high).

    A and B are resampled independently (they are separate measurement sessions).
    """
    rng = np.random.default_rng(seed)
    ratios = bootstrap_quantiles(b, q, resamples, rng) / bootstrap_quantiles(a, q, resamples, rng)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(np.quantile(b, q) / np.quantile(a, q)), float(low), float(high)
