"""Fixtures of the bench tests: a RunContext for exercising export and row building without a run."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from bench.cells import RunContext
from bench.config import config_from_dict
from bench.data import Dataset, Split, load_fashion_mnist
from bench.measure import Timing


@pytest.fixture
def run_context(tmp_path: Path) -> Callable[..., RunContext]:
    """make(formats, runtimes, tflite_precisions, size) -> a RunContext on zero images in tmp_path."""

    def make(formats: list[str], runtimes: list[str], tflite_precisions: list[str] | None = None,
             size: int = 8) -> RunContext:
        export = {"formats": formats, **({"tflite_precisions": tflite_precisions} if tflite_precisions else {})}
        config = config_from_dict({"export": export, "benchmark": {"runtimes": runtimes}})
        split = Split(np.zeros((4, 1, size, size), np.uint8), np.zeros(4, np.int64))
        dataset = Dataset("fake", ("a", "b"), split, split, split, (0.5,), (0.5,), "test")
        return RunContext(config, dataset, tmp_path, tmp_path / "images.npy", Timing(0, 0.0, 1, 0.0, 1.0, 0.0), ["cpu"])

    return make


@pytest.fixture
def small(fake_idx_dir: Path) -> Dataset:
    """Fashion-MNIST-shaped fake data: 160 train, 40 validation, 50 test images."""
    return load_fashion_mnist(str(fake_idx_dir), val_size=40, seed=1)
