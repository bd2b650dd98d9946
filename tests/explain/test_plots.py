"""The plots are written as PNG files with a shared symmetric colour scale."""

from __future__ import annotations

import numpy as np

from explain.plots import comparison_grid, flip_gallery, image_plot, symmetric_limit

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["zero", "one", "a-very-long-class-name"]


def _is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


def test_symmetric_limit_ignores_a_single_outlier_and_is_never_zero():
    v = np.zeros((2, 10, 10, 1))
    v[0, 0, 0] = 1000.0
    v[1] = 0.5
    assert symmetric_limit(v) < 1000.0
    assert symmetric_limit(np.zeros((1, 4, 4, 1))) > 0


def test_every_plot_is_written(tmp_path, images):
    values = np.random.default_rng(0).normal(size=images.shape)
    image_plot(tmp_path / "row.png", images, values, ["a", "b", "c", "d"], "title", columns=3)
    comparison_grid(tmp_path / "grid.png", images, [0, 1, 2, 0],
                    [("baseline", values, [0, 1, 2, 0]), ("int8", -values, [0, 1, 1, 0])], NAMES)
    flip_gallery(tmp_path / "flips.png", images[:2], [0, 1], [0, 1], [1, 2], values[:2], values[:2] * 0.5, NAMES, "flips")
    flip_gallery(tmp_path / "flips_nobase.png", images[:1], [0], [0], [1], values[:1], None, NAMES, "flips")
    for name in ("row.png", "grid.png", "flips.png", "flips_nobase.png"):
        assert _is_png(tmp_path / name)


def test_a_cell_is_red_where_attribution_is_positive_and_blue_where_negative(tmp_path):
    from PIL import Image

    from explain.plots import GAP, ZOOM, Cell, render_mosaic

    image = np.full((28, 28, 1), 128, dtype=np.uint8)
    values = np.zeros((28, 28, 1))
    values[:, :14], values[:, 14:] = 1.0, -1.0  # left half raises the class, right half lowers it
    path = render_mosaic(tmp_path / "m.png", [[Cell(image, values, "t")]], "title", "bar")
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
    # the cell: the first block of 84x84 pixels whose left edge is GAP, found by its colour
    cell = pixels[:, GAP:GAP + 28 * ZOOM]
    rows = np.flatnonzero((np.abs(cell - 255).sum(axis=2) > 60).all(axis=1))
    red, blue = cell[rows][:, : 14 * ZOOM - 2], cell[rows][:, 14 * ZOOM + 2:]
    assert len(rows) == 28 * ZOOM
    assert (red[..., 0] > red[..., 2] + 100).all() and (blue[..., 2] > blue[..., 0] + 100).all()
