import numpy as np
import pytest

from bench.stats import (classification_metrics, confusion_matrix, latency_stats, paired_disturbed, relative_spread,
                         wilson_interval)


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


def test_relative_spread() -> None:
    assert relative_spread(2.0, (1.9, 2.1)) == pytest.approx(0.1)
    assert relative_spread(3.0, [2.0, 3.5]) == pytest.approx(0.5)
    assert relative_spread(0.0, (0.0, 0.0)) == float("inf")


def test_paired_disturbed() -> None:
    assert paired_disturbed({"speedup": 3.0, "speedup_p10_p90": [2.2, 3.1]})
    assert not paired_disturbed({"speedup": 3.0, "speedup_p10_p90": [2.9, 3.1]})
    assert not paired_disturbed({"speedup": 3.0}) and not paired_disturbed(None)
