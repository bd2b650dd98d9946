"""Tiny numpy models for the explain tests: a softmax over linear scores of 8x8 images."""

from __future__ import annotations

import numpy as np
import pytest

SIZE = 8


def linear_model(weights: np.ndarray):
    """proba(x) = softmax(x . W / 255) for float (N, 8, 8, 1) pixels and W (64, K)."""

    def proba(x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64).reshape(len(x), -1) @ weights / 255.0
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    return proba


@pytest.fixture
def weights() -> np.ndarray:
    return np.random.default_rng(1).normal(0, 3, size=(SIZE * SIZE, 3))


@pytest.fixture
def images() -> np.ndarray:
    """Four structured images (a bright square at different places on a dim background)."""
    out = np.full((4, SIZE, SIZE, 1), 20.0)
    for i, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        out[i, r:r + 4, c:c + 4] = 230.0
    return out
