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
