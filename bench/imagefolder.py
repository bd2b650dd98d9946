"""Datasets from a folder of class sub-folders of images (`[data] dataset = "imagefolder"`): every
image read as 8-bit grayscale, resized to the zoo's 28x28, and split like Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.data import IMAGE_SUFFIXES, Dataset, Split, normalisation
from bench.errors import DataError, first_line, shown_path

if TYPE_CHECKING:  # pillow is imported where images are read
    from PIL import Image


def _grayscale_8bit(img: Image.Image) -> Image.Image:
    """The image as 8-bit grayscale. 16- and 32-bit grayscale (PNG mode I;16, I) is scaled down by
    its bit depth: Pillow's convert("L") would clip every value above 255 to white."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(img, dtype=np.int64)
        shift = 8 if img.mode.startswith("I;16") or wide.max(initial=0) <= 0xFFFF else 24
        return Image.fromarray(np.clip(wide >> shift, 0, 255).astype(np.uint8), mode="L")
    return img.convert("L")


def _read_image(file: Path, size: int) -> np.ndarray:
    """One image file as size x size 8-bit grayscale; DataError naming the file when it cannot be."""
    import warnings

    from PIL import Image  # pillow comes with torchvision

    if not file.is_file():  # a FIFO or device would block the read forever; a folder is no image
        raise DataError(f"cannot read image {file}: not a regular file")
    try:
        with warnings.catch_warnings():
            # Pillow warns past 89M pixels and refuses past 179M: a forged header or a picture far
            # beyond what a 28x28 benchmark needs; both are refused here, naming the file
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                return np.asarray(_grayscale_8bit(img).resize((size, size)))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        # ValueError: e.g. a PNG text chunk that decompresses too far; SyntaxError: Pillow's "not a ... file"
        raise DataError(f"cannot read image {file}: {first_line(exc)}") from None


def load_image_folder(root: str, *, val_size: int, seed: int, size: int = 28, test_share: float = 0.2,
                      train_limit: int = 0, test_limit: int = 0) -> Dataset:
    """Load a folder of class sub-folders (grayscale, resized to size x size) and split it.

    train_limit / test_limit (0 = all) keep the first N images of the training and test splits,
    as [data] train_limit and test_limit do for Fashion-MNIST.
    """
    directory = Path(root)
    if not directory.is_dir():
        raise DataError(f"image folder not found: {shown_path(directory)}")
    # hidden folders (.ipynb_checkpoints, .git) are tools' litter, not classes
    classes = sorted(d.name for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))
    for name in classes:  # class names are written into results.json and drawn in the report
        if not name.isprintable():  # also undecodable bytes, which arrive as lone surrogates
            raise DataError(f"class folder {shown_path(directory / name)!r}: its name is not printable UTF-8 text; rename it")
    images, labels = [], []
    for label, name in enumerate(classes):
        before = len(images)
        for file in sorted((directory / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES or file.name.startswith("."):
                continue
            images.append(_read_image(file, size))
            labels.append(label)
        if len(images) == before:  # a class with no images would be a model output nothing ever trains
            raise DataError(f"class folder {directory / name} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if len(classes) < 2 or len(images) < 10:
        raise DataError(f"image folder {directory} needs >= 2 class sub-folders and >= 10 images, found {len(classes)} and {len(images)}")
    x, y = np.stack(images)[:, None], np.asarray(labels, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(len(y) * test_share))
    n_val = min(val_size, max(1, (len(y) - n_test) // 5))
    test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    # The images were read class by class: each split keeps the seeded random order, so that what
    # takes the first N images (calibration, the TFLite representative set, Taylor importance,
    # train_limit/test_limit) sees every class, not the first ones.
    pick = lambda idx: Split(x[idx], y[idx])  # noqa: E731
    tr = pick(train).head(train_limit)
    return Dataset("imagefolder", tuple(classes), tr, pick(val), pick(test).head(test_limit),
                   *normalisation(tr.images, str(directory)), str(directory))
