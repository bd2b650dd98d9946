"""Drift metrics: exact on identical maps, low for a model that reads permuted pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from explain.drift import choose_flips, cosine, drift_metrics, spearman, top_fraction_iou
from explain.shap_explain import explain_images
from tests.explain.conftest import linear_model


def test_identical_attributions_give_exactly_one():
    values = np.random.default_rng(0).normal(size=(5, 8, 8, 1))
    block = drift_metrics(values, values.copy())
    for name in ("spearman", "iou_top10", "cosine"):
        assert block[f"{name}_mean"] == 1.0 and block[f"{name}_min"] == 1.0
    assert block["drifted"] is False
    assert all(p["spearman"] == p["iou_top10"] == p["cosine"] == 1.0 for p in block["per_image"])


def test_identical_constant_or_zero_maps_are_still_one():
    zeros = np.zeros((8, 8, 1))
    assert spearman(zeros, zeros) == cosine(zeros, zeros) == top_fraction_iou(zeros, zeros) == 1.0


def test_identical_models_give_drift_one(weights, images):
    a = explain_images(linear_model(weights), images, [0, 1, 2, 0], max_evals=100)
    b = explain_images(linear_model(weights.copy()), images, [0, 1, 2, 0], max_evals=100)
    block = drift_metrics(a.values, b.values)
    assert (block["spearman_mean"], block["iou_top10_mean"], block["cosine_mean"]) == (1.0, 1.0, 1.0)


def test_model_with_permuted_inputs_has_low_similarity(images):
    rng = np.random.default_rng(4)
    weights = np.zeros((64, 2))
    weights[:, 0] = np.linspace(-4, 4, 64)  # a smooth, structured class-0 detector
    permuted = weights[rng.permutation(64)]  # the same detector reading scrambled pixels
    kwargs = dict(masker="blur(3,3)", max_evals=300)
    a = explain_images(linear_model(weights), images, [0] * 4, **kwargs)
    b = explain_images(linear_model(permuted), images, [0] * 4, **kwargs)
    block = drift_metrics(a.values, b.values, threshold=0.5)
    assert block["spearman_mean"] < 0.5 and block["cosine_mean"] < 0.5 and block["iou_top10_mean"] < 0.5
    assert block["drifted"] is True


def test_spearman_matches_scipy_and_handles_ties():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=64), rng.normal(size=64)
    a[:10] = 0.0  # ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(np.ones(64), a) == 0.0  # no ranking in a constant map: reported as 0, never NaN


def test_cosine_and_iou_edge_cases():
    a = np.arange(100, dtype=float)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, np.zeros(100)) == 0.0
    b = a[::-1].copy()  # the top 10 % by |value| are the other end
    assert top_fraction_iou(a, b) == 0.0
    assert top_fraction_iou(a, a * 3) == 1.0  # scale-free


def test_multichannel_maps_compare_per_location():
    v = np.random.default_rng(3).normal(size=(2, 4, 4, 3))
    swapped = v[..., ::-1]  # same per-location sums
    assert drift_metrics(v, swapped)["spearman_mean"] == pytest.approx(1.0)


def test_shape_mismatch_and_empty_input_raise():
    with pytest.raises(ValueError, match="shapes differ"):
        drift_metrics(np.zeros((2, 4, 4, 1)), np.zeros((2, 4, 4, 3)))
    with pytest.raises(ValueError, match="no attributions"):
        drift_metrics(np.zeros((0, 4, 4, 1)), np.zeros((0, 4, 4, 1)))


def test_choose_flips_reuses_images_and_respects_the_limit():
    chosen = choose_flips({"a": np.array([9, 3, 5]), "b": np.array([1, 2, 5, 9]), "c": np.array([])}, 2)
    assert chosen == {"a": [3, 5], "b": [1, 5], "c": []}
    assert choose_flips({"a": np.array([1, 2])}, 0) == {"a": []}
