import gzip

import numpy as np
import pytest

from bench.data import load_fashion_mnist, read_idx
from bench.errors import DataError
from tests.conftest import DEBIAN_DATA, write_idx


def test_read_idx_roundtrip_plain_and_gzip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", array, gz=False)), array)


def test_read_idx_rejects_truncated_file(tmp_path):
    path = write_idx(tmp_path / "a", np.zeros((10, 28, 28)), gz=False)
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_read_idx_rejects_bad_magic_and_bad_gzip(tmp_path):
    (tmp_path / "x").write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    (tmp_path / "y.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x10abc")[:-4])
    with pytest.raises(DataError):
        read_idx(tmp_path / "y.gz")


def test_load_from_data_dir_splits_validation_from_train(fake_idx_dir):
    ds = load_fashion_mnist(str(fake_idx_dir), val_size=40, seed=1)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (160, 40, 50)
    assert ds.train.images.shape[1:] == (1, 28, 28) and ds.train.images.dtype == np.uint8
    # the same seed gives the same split; validation images never come from the test set
    again = load_fashion_mnist(str(fake_idx_dir), val_size=40, seed=1)
    assert np.array_equal(ds.val.labels, again.val.labels)
    original = read_idx(fake_idx_dir / "train-images-idx3-ubyte.gz")
    split = np.concatenate([ds.train.images, ds.val.images])[:, 0]
    as_bytes = lambda images: sorted(image.tobytes() for image in images)  # noqa: E731 - order-free comparison
    assert as_bytes(split) == as_bytes(original)  # train + val is exactly the training split, test untouched
    assert np.array_equal(ds.test.images[:, 0], read_idx(fake_idx_dir / "t10k-images-idx3-ubyte.gz"))


def test_mismatched_idx_files_are_rejected(fake_idx_dir):
    write_idx(fake_idx_dir / "t10k-labels-idx1-ubyte.gz", np.zeros(49))
    with pytest.raises(DataError, match="mismatched"):
        load_fashion_mnist(str(fake_idx_dir), val_size=10)


def test_missing_and_empty_data_dirs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_fashion_mnist(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="holds no Fashion-MNIST IDX files \\([^)]*\\)$"):
        load_fashion_mnist(str(tmp_path))
    (tmp_path / "cats").mkdir()  # a folder of class sub-folders of images: the imagefolder dataset was meant
    with pytest.raises(DataError, match="holds no Fashion-MNIST IDX files \\([^)]*\\)$"):  # no images in it yet
        load_fashion_mnist(str(tmp_path))
    (tmp_path / "cats" / "1.png").write_bytes(b"")
    with pytest.raises(DataError, match='it holds class sub-folders of images: set \\[data\\] dataset = "imagefolder"'):
        load_fashion_mnist(str(tmp_path))


@pytest.mark.skipif(not DEBIAN_DATA.exists(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_shapes():
    ds = load_fashion_mnist(val_size=5000)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
    assert sorted(np.unique(ds.test.labels)) == list(range(10))
    assert 0.25 < ds.mean[0] < 0.32 and 0.3 < ds.std[0] < 0.4


def _image_folder(root, per_class=20, classes=("cat", "dog", "owl")):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(root / name / f"{i}.png")
    (root / "cat" / "notes.txt").write_text("not an image")  # other files are ignored
    return root


def test_image_folder_is_resized_split_and_limited(tmp_path):
    from bench.imagefolder import load_image_folder

    root = _image_folder(tmp_path / "imgs")
    full = load_image_folder(str(root), val_size=5, seed=0)
    assert full.classes == ("cat", "dog", "owl") and full.train.images.shape[1:] == (1, 28, 28)
    assert (len(full.test), len(full.val), len(full.train)) == (12, 5, 43)  # 20% test, then val_size
    limited = load_image_folder(str(root), val_size=5, seed=0, train_limit=10, test_limit=4)
    assert (len(limited.test), len(limited.val), len(limited.train)) == (4, 5, 10)
    assert np.array_equal(limited.train.images, full.train.images[:10])
    # read class by class, but every split is shuffled: the first images (calibration, train_limit) mix classes
    assert len(set(full.train.labels[:10].tolist())) > 1 and len(set(limited.test.labels.tolist())) > 1


def test_image_folder_errors_name_the_problem(tmp_path):
    from bench.imagefolder import load_image_folder

    with pytest.raises(DataError, match="image folder not found"):
        load_image_folder(str(tmp_path / "none"), val_size=5, seed=0)
    with pytest.raises(DataError, match=">= 2 class sub-folders"):
        load_image_folder(str(_image_folder(tmp_path / "one", classes=("cat",))), val_size=5, seed=0)
    broken = _image_folder(tmp_path / "broken")
    (broken / "dog" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*bad.png"):
        load_image_folder(str(broken), val_size=5, seed=0)
    empty = _image_folder(tmp_path / "empty")
    (empty / "zebra").mkdir()
    (empty / "zebra" / "readme.txt").write_text("no images yet")
    with pytest.raises(DataError, match="class folder .*zebra holds no images"):
        load_image_folder(str(empty), val_size=5, seed=0)


@pytest.mark.parametrize("damage", ["fifo", "forged-size", "huge-text-chunk", "too-many-pixels", "unprintable-class"])
def test_image_folder_damage_is_one_data_error(tmp_path, damage):
    """Files a loader would hang on (a FIFO), refuse with a non-OSError (a header claiming 900M pixels,
    a PNG text chunk that inflates past Pillow's limit) or only warn about (100M real pixels), and a
    class folder whose name is not text: each a DataError naming it, no warning lines."""
    import os
    import struct
    import warnings
    import zlib

    from PIL import Image

    from bench.imagefolder import load_image_folder

    root = _image_folder(tmp_path / "imgs", per_class=5)
    bad = root / "dog" / "bad.png"
    if damage == "fifo":
        os.mkfifo(bad)
    elif damage == "forged-size":  # a 1x1 PNG whose header says 30000x30000
        Image.new("L", (1, 1)).save(bad)
        data = bytearray(bad.read_bytes())
        data[16:24] = struct.pack(">II", 30000, 30000)
        data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
        bad.write_bytes(bytes(data))
    elif damage == "huge-text-chunk":  # a zTXt chunk that inflates to 10 MB
        Image.new("L", (4, 4)).save(bad)
        data = bad.read_bytes()
        body = b"k\0\0" + zlib.compress(b" " * 10_000_000)
        chunk = struct.pack(">I", len(body)) + b"zTXt" + body + struct.pack(">I", zlib.crc32(b"zTXt" + body))
        bad.write_bytes(data[:33] + chunk + data[33:])
    elif damage == "too-many-pixels":
        Image.new("1", (10000, 10000)).save(bad)
    else:
        (root / "d\udcffg").mkdir()  # the bytes b"d\xffg": not UTF-8
    match = "name is not printable" if damage == "unprintable-class" else "cannot read image .*bad.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=match):
            load_image_folder(str(root), val_size=5, seed=0)


def test_image_folder_skips_hidden_folders_and_scales_16_bit_images(tmp_path):
    from PIL import Image

    from bench.imagefolder import load_image_folder

    root = _image_folder(tmp_path / "imgs")
    (root / ".ipynb_checkpoints").mkdir()  # a tool's litter, not a class
    deep = np.full((40, 30), 40000, dtype=np.uint16)  # 40000 / 65535 of white: 156 in 8 bits
    for i in range(20):
        Image.fromarray(deep).save(root / "owl" / f"deep{i}.png")
    assert Image.open(root / "owl" / "deep0.png").mode.startswith("I")
    data = load_image_folder(str(root), val_size=5, seed=0)
    assert data.classes == ("cat", "dog", "owl")
    images = np.concatenate([data.train.images, data.val.images, data.test.images])
    labels = np.concatenate([data.train.labels, data.val.labels, data.test.labels])
    flat = images[labels == 2].reshape((labels == 2).sum(), -1)
    assert (flat == 40000 >> 8).all(axis=1).sum() == 20  # scaled, not clipped to 255


def test_read_idx_stops_at_its_size_limit(tmp_path, monkeypatch):
    """A gzip bomb is not decompressed into memory: reading stops past the limit."""
    import bench.data

    monkeypatch.setattr(bench.data, "IDX_MAX_BYTES", 1 << 20)
    path = write_idx(tmp_path / "big-idx3-ubyte.gz", np.zeros((2000, 28, 28), np.uint8))  # 1.5 MB unpacked, 2 KB packed
    with pytest.raises(DataError, match="holds more than"):
        read_idx(path)
