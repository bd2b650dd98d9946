"""Deletion curves: the masker's replacement, monotone sanity, SHAP order beats a random order."""

from __future__ import annotations

import numpy as np
import pytest

from explain.faithfulness import curve_area, deletion_images, deletion_order, deletion_scores, summary
from explain.shap_explain import explain_images, make_masker, masked_image
from tests.explain.conftest import linear_model


def test_curve_area_is_normalised():
    assert curve_area(np.ones(11)) == pytest.approx(1.0)
    assert curve_area(np.zeros(5)) == 0.0
    assert curve_area(np.linspace(1, 0, 21)) == pytest.approx(0.5)


def test_deletion_order_sums_channels_and_breaks_ties_by_position():
    v = np.zeros((2, 2, 2))
    v[1, 1] = [1.0, 1.0]
    v[0, 1] = [3.0, -2.0]
    assert deletion_order(v).tolist() == [3, 1, 0, 2]


def test_deletion_images_go_from_the_image_to_the_fully_masked_image(images):
    masker = make_masker("blur(3,3)", images.shape[1:])
    order = np.arange(64)
    steps = deletion_images(images[0], order, masker, steps=4)
    assert steps.shape == (5, 8, 8, 1)
    assert np.array_equal(steps[0], images[0])
    assert np.array_equal(steps[-1], masked_image(masker, np.zeros((8, 8, 1), bool), images[0]))
    assert np.array_equal(steps[2][4:], images[0][4:])  # half deleted: the bottom rows are untouched


def test_shap_order_deletes_evidence_faster_than_random(images):
    weights = np.zeros((64, 2))
    weights[:32, 0] = 2.0  # class 0 = brightness of the top half
    proba = linear_model(weights)
    subset = images[:2]  # squares in the top half
    out = explain_images(proba, subset, [0, 0], masker="blur(3,3)", max_evals=200)
    scores = deletion_scores(proba, subset, out.values, [0, 0], masker="blur(3,3)", steps=8, seed=0)
    assert scores["curves"].shape == scores["random_curves"].shape == (2, 9)
    np.testing.assert_allclose(scores["curves"][:, 0], out.outputs)  # the curve starts at the model's output
    assert all(a < r for a, r in zip(scores["auc"], scores["random_auc"]))
    block = summary(scores, steps=8)
    assert block["beats_random"] == 1.0 and 0.0 <= block["auc"]["min"] <= block["auc"]["max"] <= 1.0


def test_shape_mismatch_raises(images):
    with pytest.raises(ValueError, match="differ in shape"):
        deletion_scores(lambda x: np.ones((len(x), 2)) / 2, images, np.zeros((4, 8, 8, 3)), [0] * 4)
