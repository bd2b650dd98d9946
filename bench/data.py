"""Datasets as plain numpy arrays: Fashion-MNIST from IDX files (a folder of user images: bench/imagefolder.py).

Images stay raw uint8 (N, C, H, W) until the last moment: the same raw pixels feed every runtime
through the artifact's `input_spec`, so the spec is exercised exactly as a user would apply it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from bench.errors import DataError, shown_path

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
HOW_TO_GET_DATA = (
    "install Debian's package (apt-get install -y dataset-fashion-mnist), "
    "pass --data-dir with the four IDX files, or allow the torchvision download ([data].download = true) on a machine with network"
)


@dataclass
class Split:
    """Raw images (N, C, H, W) uint8 and integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @functools.cached_property
    def digest(self) -> str:
        """A hash of the pixels and labels (about 0.1 s for Fashion-MNIST's training split), computed
        once per split: the weight caches' keys, the run's record and --resume's check all ask for it."""
        digest = hashlib.sha256()
        for array in (self.images, self.labels):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()[:16]

    def head(self, n: int) -> "Split":
        return Split(self.images[:n], self.labels[:n]) if n else self


@dataclass
class Dataset:
    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.test.images.shape[1:])  # type: ignore[return-value]

    @property
    def digests(self) -> dict[str, str]:
        """Each split's digest: which images a run trained and measured on, whatever folder they came
        from (`edgebench compare` names runs whose images differ; --resume refuses other images)."""
        return {"train": self.train.digest, "val": self.val.digest, "test": self.test.digest}


IDX_MAX_BYTES = 2 << 30  # a gzip bomb stops here instead of filling the memory


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array; DataError names a bad file.

    >>> read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").shape
    (10000,)
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as stream:
                raw = stream.read(IDX_MAX_BYTES + 1)  # read no further than any real dataset needs
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) > IDX_MAX_BYTES:
        raise DataError(f"{path} holds more than {IDX_MAX_BYTES / 2**30:g} GiB (Fashion-MNIST's largest file is 47 MB); not read further")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header needs {header} bytes, file has {len(raw)})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: numpy's product wraps around for absurd shapes
    if len(raw) - header != expected:
        raise DataError(f"{path} is truncated or padded: shape {shape} needs {expected} data bytes, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz", directory / "raw" / stem, directory / "FashionMNIST" / "raw" / stem):
        if candidate.is_file():
            return candidate
    return None


def _load_idx_dir(directory: Path) -> dict[str, np.ndarray] | None:
    paths = {key: _find_idx(directory, stem) for key, stem in FASHION_MNIST_FILES.items()}
    if not any(paths.values()):
        return None
    missing = [FASHION_MNIST_FILES[k] for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"data directory {directory} lacks {', '.join(missing)} (.gz or plain)")
    arrays = {key: read_idx(p) for key, p in paths.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{directory}: {split} images must be 3-D and labels 1-D IDX arrays, got {images.shape} and {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{directory}: {split} has {len(images)} images but {len(labels)} labels (mismatched IDX files)")
        if not len(images):
            raise DataError(f"{directory}: the {split} IDX files hold no images")
        # every input_spec scales raw pixels by 1/255: other pixel types would be read on the wrong scale
        if images.dtype != np.uint8:
            raise DataError(f"{directory}: {split} images are {images.dtype} IDX data; Fashion-MNIST images are unsigned bytes (0..255)")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{directory}: {split} labels are {labels.dtype} IDX data; expected integer class indices 0..9")
        if not (images.shape[1] and images.shape[2]):
            raise DataError(f"{directory}: {split} images have no pixels (shape {images.shape})")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{directory}: {split} labels outside 0..9 (not Fashion-MNIST labels)")
    if (train := arrays["train_images"].shape[1:]) != (test := arrays["test_images"].shape[1:]):
        raise DataError(f"{directory}: training images are {train[0]}x{train[1]} but test images {test[0]}x{test[1]}; "
                        "a model trained on one size is measured on the other")
    return arrays


def _torchvision_download(cache: Path) -> Path:
    from torchvision.datasets import FashionMNIST  # imported here: only needed as a fallback

    try:
        FashionMNIST(str(cache), train=True, download=True)
        FashionMNIST(str(cache), train=False, download=True)
    except Exception as exc:  # noqa: BLE001 - any network or mirror failure means "no data"
        raise DataError(f"no Fashion-MNIST found locally and the download failed ({exc.__class__.__name__}); {HOW_TO_GET_DATA}") from None
    return cache / "FashionMNIST" / "raw"


def _split_train_val(images: np.ndarray, labels: np.ndarray, val_size: int, seed: int) -> tuple[Split, Split]:
    if val_size >= len(labels):
        raise DataError(f"[data].val_size = {val_size} leaves no training images (the training set has {len(labels)})")
    order = np.random.default_rng(seed).permutation(len(labels))
    val_idx, train_idx = np.sort(order[:val_size]), np.sort(order[val_size:])
    return Split(images[train_idx], labels[train_idx]), Split(images[val_idx], labels[val_idx])


def _has_image_classes(directory: Path) -> bool:
    """Whether a folder looks like an image-folder dataset: a sub-folder holding image files."""
    try:
        return any(d.is_dir() and not d.name.startswith(".") and any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir())
                   for d in directory.iterdir())
    except OSError:  # unreadable: no hint rather than a second error
        return False


def load_fashion_mnist(data_dir: str = "", *, download: bool = True, val_size: int = 5000, seed: int = 0,
                       cache_dir: str | Path = "results/.cache", train_limit: int = 0, test_limit: int = 0) -> Dataset:
    """Load Fashion-MNIST from data_dir, the Debian package, the cache, or (last) a download."""
    if data_dir:
        directory = Path(data_dir)
        if not directory.is_dir():
            raise DataError(f"data directory {directory} is a file; pass the folder that holds the IDX files"
                            if directory.is_file() else f"data directory not found: {shown_path(directory)}")
        arrays = _load_idx_dir(directory)
        if arrays is None:
            hint = '; it holds class sub-folders of images: set [data] dataset = "imagefolder"' if _has_image_classes(directory) else ""
            raise DataError(f"data directory {directory} holds no Fashion-MNIST IDX files "
                            f"({', '.join(FASHION_MNIST_FILES.values())}){hint}")
        source = str(directory)
    else:
        download_dir = Path(cache_dir) / "data"
        arrays, source = None, ""
        for directory in (DEBIAN_FASHION_MNIST, download_dir / "FashionMNIST" / "raw"):
            if directory.is_dir() and (arrays := _load_idx_dir(directory)) is not None:
                source = str(directory)
                break
        if arrays is None:
            if not download:
                raise DataError(f"Fashion-MNIST not found in {DEBIAN_FASHION_MNIST} or {download_dir}; {HOW_TO_GET_DATA}")
            directory = _torchvision_download(download_dir)
            arrays, source = _load_idx_dir(directory), f"torchvision download -> {directory}"
            assert arrays is not None
    train_images = arrays["train_images"][:, None]
    train_labels = arrays["train_labels"].astype(np.int64)
    if train_limit:
        train_images, train_labels = train_images[: train_limit + val_size], train_labels[: train_limit + val_size]
    train, val = _split_train_val(train_images, train_labels, val_size, seed)
    test = Split(arrays["test_images"][:, None], arrays["test_labels"].astype(np.int64)).head(test_limit)
    mean, std = normalisation(train.images, source)
    return Dataset("fashion-mnist", FASHION_MNIST_CLASSES, train, val, test, mean, std, source)


def normalisation(train_images: np.ndarray, source: str) -> tuple[tuple[float], tuple[float]]:
    """Mean and std of the training pixels on the [0, 1] scale (the training split only, so no
    test-set leakage), rounded to 4 decimals as every input_spec records them.

    DataError when the std is 0: every artifact's input would be a division by zero (inf), and
    an int8 input would silently clip those to its largest value.
    """
    mean, std = round(float(train_images.mean() / 255), 4), round(float(train_images.std() / 255), 4)
    if not std > 0:
        raise DataError(f"the training images in {source} have no spread in brightness (pixel std {std} on the 0..1 "
                        "scale, to 4 decimals): they cannot be normalised, and there is nothing to learn from them")
    return (mean,), (std,)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def batch_indices(count: int, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield index arrays of consecutive batches over `count` items, optionally in a seeded random order."""
    order = np.random.default_rng(seed).permutation(count) if shuffle else np.arange(count)
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def batches(split: Split, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (images uint8, labels) numpy batches, optionally in a seeded random order."""
    for idx in batch_indices(len(split), batch_size, shuffle=shuffle, seed=seed):
        yield split.images[idx], split.labels[idx]
