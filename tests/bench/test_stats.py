import math

import numpy as np
import pytest

from bench.stats import (bootstrap_quantiles, bootstrap_ratio, classification_metrics, confusion_matrix, latency_stats,
                         paired_disturbed, ratio_spread, two_standard_errors, wilson_interval)


def test_latency_stats_exact_on_known_samples():
    s = latency_stats(np.arange(1, 101, dtype=float))  # 1..100 ms
    assert s["n"] == 100
    assert s["p50"] == pytest.approx(50.5)
    assert s["p90"] == pytest.approx(90.1)
    assert s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5)
    assert s["std"] == pytest.approx(np.sqrt((100**2 - 1) / 12))
    assert (s["min"], s["max"]) == (1.0, 100.0)


def test_latency_stats_rejects_empty():
    with pytest.raises(ValueError):
        latency_stats(np.array([]))


def test_wilson_interval_known_value():
    low, high = wilson_interval(90, 100)
    assert low == pytest.approx(0.8256, abs=1e-4)
    assert high == pytest.approx(0.9448, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_classification_metrics():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    m = classification_metrics(labels, preds, 3, baseline_predictions=np.array([0, 1, 1, 1, 2, 2]))
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["per_class_top1"] == [0.5, 1.0, 0.5]
    assert m["recall_macro"] == pytest.approx(2 / 3)
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["agreement_with_baseline"] == pytest.approx(5 / 6)
    assert confusion_matrix(labels, preds, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_macro_means_skip_classes_absent_from_labels_and_predictions() -> None:
    """A small test slice without class 2, predicted perfectly: every macro score is 1, not 2/3."""
    labels = np.array([0, 0, 1, 1])
    m = classification_metrics(labels, labels.copy(), 3)
    assert m["f1_macro"] == m["recall_macro"] == m["precision_macro"] == pytest.approx(1.0)
    # a class only predicted (wrongly) still counts: its precision and recall are 0
    m = classification_metrics(labels, np.array([0, 0, 1, 2]), 3)
    assert m["recall_macro"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_ratio_spread_is_the_same_whichever_side_is_faster() -> None:
    assert ratio_spread((2.0, 2.2)) == pytest.approx(math.log(1.1))
    assert ratio_spread((1 / 2.2, 1 / 2.0)) == pytest.approx(ratio_spread((2.0, 2.2)))
    assert ratio_spread((0.0, 1.0)) == math.inf


@pytest.mark.parametrize("paired, disturbed", [
    ({"speedup": 3.0, "speedup_p10_p90": [2.2, 3.1], "rounds": 20}, True),
    ({"speedup": 3.0, "speedup_p10_p90": [2.2, 3.1]}, True),                   # an old block without rounds
    ({"speedup": 3.0, "speedup_p10_p90": [2.2, 3.1], "rounds": 4}, False),     # too few rounds to judge
    ({"speedup": 3.0, "speedup_p10_p90": [2.9, 3.1], "rounds": 20}, False),
    ({"speedup": 3.0}, False), (None, False), ("3x", False), ([1, 2], False),
    ({"speedup": 3.0, "speedup_p10_p90": ["a", "b"]}, False), ({"speedup_p10_p90": None}, False),
])
def test_paired_disturbed(paired, disturbed) -> None:
    assert paired_disturbed(paired) is disturbed


def test_bootstrap_is_seeded_and_separates_real_changes() -> None:
    rng = np.random.default_rng(1)
    a = rng.lognormal(0, 0.3, 2000)
    b = rng.lognormal(0, 0.3, 2000) * 1.1
    first, second = bootstrap_ratio(a, b, seed=3), bootstrap_ratio(a, b, seed=3)
    assert first == second
    ratio, low, high = first
    assert 1 < low < ratio < high and ratio == pytest.approx(1.1, rel=0.05)
    _, low, high = bootstrap_ratio(a, rng.permutation(a), seed=3)
    assert low < 1 < high


@pytest.mark.parametrize("q", [0.5, 0.99])
def test_fast_bootstrap_matches_resampling(q: float) -> None:
    """The order-statistic shortcut has the distribution of real resampling (checked on 300 samples)."""
    x = np.random.default_rng(0).lognormal(0, 0.5, 300)
    fast = bootstrap_quantiles(x, q, 50_000, np.random.default_rng(1))
    rng = np.random.default_rng(2)
    naive = np.array([np.quantile(x[rng.integers(0, x.size, x.size)], q) for _ in range(5_000)])
    assert fast.mean() == pytest.approx(naive.mean(), rel=0.01)
    assert fast.std() == pytest.approx(naive.std(), rel=0.1)
    np.testing.assert_allclose(np.percentile(fast, [2.5, 97.5]), np.percentile(naive, [2.5, 97.5]), rtol=0.03)


def test_two_standard_errors_of_a_difference_of_top1s():
    # 2 * sqrt((0.9 * 0.1 + 0.9 * 0.1) / 10,000) = 2 * sqrt(1.8e-5)
    assert two_standard_errors(0.9, 0.9, 10_000) == pytest.approx(2 * math.sqrt(1.8e-5))
    assert two_standard_errors(0.9, 0.9, 2_500) == pytest.approx(2 * two_standard_errors(0.9, 0.9, 10_000))
    assert two_standard_errors(1.0, 0.0, 100) == 0.0  # certain outcomes carry no sampling error
