"""Shared fixtures: tiny data and models, so unit tests run in seconds on 2 cores."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DEBIAN_DATA = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> Path:
    """Write an IDX file (uint8) the way the dataset authors do."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def fake_idx_dir(tmp_path: Path) -> Path:
    """A data dir with small, valid Fashion-MNIST-shaped IDX files (200 train, 50 test)."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (200, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 200))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (50, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 50))
    return tmp_path


@pytest.fixture(scope="session")
def real_data_available() -> bool:
    return (DEBIAN_DATA / "t10k-labels-idx1-ubyte.gz").exists()


TINY_CONFIG = """
[data]
train_limit = 1000
test_limit = 1000
val_size = 200
[baseline]
model = "tinycnn"
epochs = 1
[export]
formats = ["torch", "onnx"]
[benchmark]
runtimes = ["torch", "onnxruntime"]
min_calls = 20
min_seconds = 0.05
[explain]
enabled = false
"""


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_CONFIG + f'\n[output]\ndir = "{tmp_path / "results"}"\ncache_dir = "{tmp_path / "cache"}"\n')
    return path
