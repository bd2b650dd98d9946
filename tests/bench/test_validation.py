"""bench.validation: when a measured row's outputs are trusted (parity with torch, agreement of a
reduced-precision row with its fp32 parent) and when the row fails with a reason."""

from __future__ import annotations

import numpy as np
import pytest

from bench.config import config_from_dict
from bench.measure import accuracy_block, parity_block
from bench.results import Row
from bench.validation import parity_tolerance, validate_row


def _verdict(precision: str, logits: np.ndarray, reference: np.ndarray) -> Row:
    """A row's validation as measure_row gives it, from its logits and its fp32 parent's."""
    labels = reference.argmax(1)
    row = Row("v", [], "tflite", precision, "litert", "cpu")
    row.accuracy = accuracy_block(logits, labels, reference.shape[1], None)
    row.parity = parity_block(logits, reference, "torch eager (v, fp32)", len(reference))
    validate_row(row, reference, labels, config_from_dict({}))
    return row


def test_parity_check_catches_an_injected_mismatch() -> None:
    reference = np.random.default_rng(0).normal(size=(1000, 10)).astype(np.float32)
    assert _verdict("fp32", reference + 1e-6, reference).status == "ok"
    injected = reference.copy()
    injected[17, 3] += 1e-3  # one logit of one image, ten times the 1e-4 tolerance
    row = _verdict("fp32", injected, reference)
    assert row.status == "validation_failed" and row.reason == "max abs logit difference 0.001 vs torch exceeds 0.0001 (on 1000 parity images)"


def test_a_nan_parity_fails_rather_than_passing_every_comparison() -> None:
    reference = np.random.default_rng(0).normal(size=(100, 10)).astype(np.float32)
    nan_reference = reference.copy()
    nan_reference[3, 0] = np.nan  # e.g. a torch reference gone bad: no difference is "within" the tolerance
    row = Row("v", [], "tflite", "fp32", "litert", "cpu")
    row.accuracy = accuracy_block(reference, reference.argmax(1), 10, None)
    row.parity = parity_block(reference, nan_reference, "torch eager (v, fp32)", 100)
    validate_row(row, nan_reference, reference.argmax(1), config_from_dict({}))
    assert row.status == "validation_failed" and "nan" in row.reason


def test_the_parity_tolerance_grows_with_logits_beyond_100() -> None:
    normal = np.random.default_rng(0).normal(size=(100, 10)).astype(np.float32)
    assert parity_tolerance(1e-4, normal) == 1e-4  # trained models' logits: as configured
    diverged = normal * 1000  # |logits| in the thousands: float32 rounding alone moves them by ~1e-3
    assert parity_tolerance(1e-4, diverged) == pytest.approx(1e-4 * np.abs(diverged).max() / 100)
    row = Row("v", [], "onnx", "fp32", "onnxruntime", "cpu")
    row.accuracy = accuracy_block(diverged + 1e-3, diverged.argmax(1), 10, None)
    row.parity = {**parity_block(diverged + 1e-3, diverged, "torch eager (v, fp32)", 100),
                  "tolerance": parity_tolerance(1e-4, diverged)}
    validate_row(row, diverged, diverged.argmax(1), config_from_dict({}))
    assert row.status == "ok"
    nan_parent = np.full_like(normal, np.nan)
    assert parity_tolerance(1e-4, nan_parent) == 1e-4


def test_a_reduced_precision_row_is_not_validated_against_a_nan_parent() -> None:
    reference = np.random.default_rng(0).normal(size=(100, 10)).astype(np.float32)
    nan_parent = np.full_like(reference, np.nan)  # argmax is class 0 everywhere
    constant = np.zeros_like(reference)
    constant[:, 0] = 1.0  # an int8 row that always says class 0 "agrees" with it on every image
    row = _verdict("int8", constant, nan_parent)
    assert row.status == "validation_failed" and row.reason == \
        "its fp32 parent's outputs hold NaN/inf, so there is nothing to validate it against"
    assert _verdict("int8", reference, reference).status == "ok"


def test_a_quantized_row_is_judged_by_agreement_with_its_fp32_parent() -> None:
    reference = np.random.default_rng(1).normal(size=(1000, 10)).astype(np.float32)
    coarse = np.round(reference, 2)  # quantization noise: nearly every prediction kept
    assert _verdict("int8", coarse, reference).status == "ok"
    flipped = reference.copy()
    flipped[:50] = -flipped[:50]  # 5% of the predictions change: agreement 0.95 < 0.97
    row = _verdict("int8", flipped, reference)
    assert row.status == "validation_failed" and "agreement with the fp32 parent 0.9500" in row.reason
