"""SHAP values of a tiny numpy model: shape, additivity, determinism, storage, masking."""

from __future__ import annotations

import numpy as np
import pytest

from explain.shap_explain import (choose_explanation_set, explain_images, make_masker, masked_image,
                                  masker_problem, save_array, softmax)
from tests.explain.conftest import linear_model


def test_values_have_the_input_shape_and_are_additive(weights, images):
    proba = linear_model(weights)
    classes = [0, 1, 2, 0]
    out = explain_images(proba, images, classes, masker="blur(3,3)", max_evals=200, batch_size=20)
    assert out.values.shape == images.shape and out.values.dtype == np.float32
    expected = proba(images)[np.arange(4), classes]
    np.testing.assert_allclose(out.outputs, expected, atol=1e-12)
    # SHAP's efficiency property: base value + sum of attributions = the explained output
    np.testing.assert_allclose(out.base_values + out.values.sum(axis=(1, 2, 3)), out.outputs, atol=1e-5)
    assert out.predicted.tolist() == proba(images).argmax(axis=1).tolist()
    assert len(out.seconds_per_image) == len(out.cpu_seconds_per_image) == 4


def test_additive_with_inpainting_masker(weights, images):
    out = explain_images(linear_model(weights), images[:1], [1], masker="inpaint_telea", max_evals=100)
    np.testing.assert_allclose(out.base_values + out.values.sum(axis=(1, 2, 3)), out.outputs, atol=1e-5)


def test_same_model_gives_identical_values_and_keeps_global_rng(weights, images):
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    a = explain_images(linear_model(weights), images, [0, 1, 2, 0], max_evals=100, seed=3)
    assert np.random.random() == before  # the caller's global RNG stream is untouched
    b = explain_images(linear_model(weights.copy()), images, [0, 1, 2, 0], max_evals=100, seed=3)
    assert np.array_equal(a.values, b.values)


def test_more_important_region_gets_more_credit(images):
    weights = np.zeros((64, 2))
    weights[:32, 0] = 1.0  # class 0 looks only at the top half of the image
    out = explain_images(linear_model(weights), images[:1], [0], masker="blur(3,3)", max_evals=300)
    top, bottom = out.values[0, :4].sum(), out.values[0, 4:].sum()
    assert top > 0 and abs(bottom) < 0.1 * top


def test_npy_round_trip_without_pickle(tmp_path, weights, images):
    out = explain_images(linear_model(weights), images[:2], [0, 1], max_evals=64)
    save_array(tmp_path / "v.npy", out.values)
    assert np.array_equal(np.load(tmp_path / "v.npy", allow_pickle=False), out.values)


def test_masked_image_keeps_or_blurs(images):
    masker = make_masker("blur(3,3)", images.shape[1:])
    image = images[1]
    assert np.array_equal(masked_image(masker, np.ones(image.shape, bool), image), image)
    hidden = masked_image(masker, np.zeros(image.shape, bool), image)
    assert not np.array_equal(hidden, image) and hidden.shape == image.shape
    # a second, different image must not reuse the first one's cached blur
    other = masked_image(masker, np.zeros(image.shape, bool), images[2])
    assert not np.array_equal(other, hidden)


def test_bad_masker_and_shapes_are_rejected(weights, images):
    with pytest.raises(ValueError, match="unknown masker"):
        make_masker("gaussian", (8, 8, 1))
    with pytest.raises(ValueError, match="classes"):
        explain_images(linear_model(weights), images, [0])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        explain_images(linear_model(weights), images[:, :, :, 0], [0] * 4)


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]))
    np.testing.assert_allclose(p, [[0.5, 0.5], [0.25, 0.75]])


def test_explanation_set_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 30)
    a = choose_explanation_set(labels, 2, seed=0)
    assert len(a) == 20 and np.bincount(labels[a]).tolist() == [2] * 10
    assert a.tolist() == choose_explanation_set(labels, 2, seed=0).tolist()
    assert a.tolist() != choose_explanation_set(labels, 2, seed=1).tolist()
    assert len(choose_explanation_set(np.array([0, 0, 1]), 5, seed=0)) == 3  # never more than a class has


@pytest.mark.parametrize("spec, problem", [
    ("blur(10,10)", None), ("blur(3, 5)", None), ("inpaint_telea", None), ("inpaint_ns", None),
    ("blurr(10,10)", "expected 'blur(kx,ky)'"), ("blur(10)", "expected 'blur(kx,ky)'"), ("blur(a,b)", "expected"),
    ("blur(0,3)", "must be in 1..1024"), ("blur(3,99999999999999999999)", "must be in 1..1024"), ("inpaint", "expected"),
])
def test_masker_specs_are_checked_before_shap_sees_them(spec, problem):
    found = masker_problem(spec)
    assert (found is None) if problem is None else (problem in found)
