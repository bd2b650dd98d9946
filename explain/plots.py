"""PNG plots of attributions: per-row image plots, the variant comparison grid and the flip gallery.

Attributions are drawn the way shap's image_plot draws them: the image in faint grey, and on top
red where a pixel raises the explained class's probability, blue where it lowers it, transparent
near zero. Every plot uses one symmetric colour scale for all its panels, so colours compare.

Every plot is a mosaic of cells composed in numpy and lettered with Pillow (in matplotlib's DejaVu
Sans), not a matplotlib subplot per cell: a run's comparison grid has ~50 columns of 20 images,
and its 1,000 axes took two minutes to lay out and save; the mosaic takes about a second.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ZOOM = 3  # screen pixels per image pixel (28 x 28 images become 84 x 84 cells)
GAP = 14  # pixels between cells (column names need the room)
LINE_PX = 12  # height of a line of cell title text


@dataclass(frozen=True)
class Cell:
    """One panel: an image, optionally under its attribution overlay, with a title above it."""

    image: np.ndarray
    values: np.ndarray | None
    title: str
    color: str = "black"


@functools.cache
def _colormap() -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    # blue (negative) -> transparent (zero) -> red (positive), shap's red_transparent_blue in spirit
    return LinearSegmentedColormap.from_list(
        "red_transparent_blue", [(0.0, (0.0, 0.54, 0.98, 1.0)), (0.5, (1.0, 1.0, 1.0, 0.0)), (1.0, (1.0, 0.0, 0.32, 1.0))])


def symmetric_limit(*arrays: np.ndarray | None, percentile: float = 99.5) -> float:
    """One colour limit for all panels: a high percentile of |attribution| (a single extreme
    pixel would otherwise wash every other panel out); never zero."""
    flat = np.concatenate([np.abs(_2d_stack(a)).ravel() for a in arrays if a is not None and np.size(a)] or [np.zeros(0)])
    limit = float(np.percentile(flat, percentile)) if flat.size else 0.0
    return limit if limit > 0 else 1e-12


def _2d_stack(values: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W) summed over channels."""
    v = np.asarray(values, dtype=np.float64)
    return v.sum(axis=-1) if v.ndim == 4 else v


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    return img.mean(axis=-1) if img.ndim == 3 else img


def overlay_rgb(image: np.ndarray, values: np.ndarray | None, limit: float) -> np.ndarray:
    """(H, W, 3) floats in [0, 1]: the image alone in grey; with values, the image in faint grey
    (alpha 0.35 on white) under the attribution colour map (-limit blue .. +limit red)."""
    gray = _gray(image)[..., None] / 255.0
    if values is None:
        return np.repeat(gray, 3, axis=-1)
    v = np.asarray(values, dtype=np.float64)
    rgba = _colormap()(np.clip(((v.sum(axis=-1) if v.ndim == 3 else v) + limit) / (2 * limit), 0, 1))
    alpha = rgba[..., 3:4]
    return alpha * rgba[..., :3] + (1 - alpha) * (0.35 * gray + 0.65)


def short_label(name: str, width: int = 11) -> str:
    """A class name cut to fit a small panel's title."""
    return name if len(name) <= width else name[: width - 1] + "."


@functools.cache
def _font(size: int) -> Any:
    """matplotlib's DejaVu Sans for Pillow (matplotlib ships it, so no system font is needed)."""
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _fitted_font(draw: Any, text: str, width: float, size: int = 10, smallest: int = 7) -> Any:
    """The largest font from `size` down to `smallest` whose widest line of `text` fits `width` pixels."""
    for points in range(size, smallest - 1, -1):
        if max(draw.textlength(line, font=_font(points)) for line in text.splitlines() or [""]) <= width:
            return _font(points)
    return _font(smallest)


def _rgb8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def render_mosaic(path: Path, grid: Sequence[Sequence[Cell | None]], title: str, bar_label: str,
                  column_names: Sequence[str] | None = None) -> Path:
    """Write a PNG of `grid` (rows of cells; None leaves a cell empty) with one shared colour scale
    over every cell's values, a title, optional column names above the first row, and a colour bar."""
    from PIL import Image, ImageDraw

    cells = [cell for row in grid for cell in row if cell is not None]
    limit = symmetric_limit(*[cell.values for cell in cells])
    n_rows, n_cols = len(grid), max((len(row) for row in grid), default=1)
    h, w = np.asarray(cells[0].image).shape[:2] if cells else (28, 28)
    cell_h, cell_w = h * ZOOM, w * ZOOM
    title_lines = max((cell.title.count("\n") + 1 for cell in cells), default=1)
    pitch_x, pitch_y = cell_w + GAP, cell_h + title_lines * LINE_PX + 4
    header_px = (max(name.count("\n") + 1 for name in column_names) * LINE_PX + 4) if column_names else 0
    title_px = (title.count("\n") + 1) * 15 + 10
    footer_px = 64 if any(cell.values is not None for cell in cells) else 10
    width, height = max(n_cols * pitch_x + GAP, 440), title_px + header_px + n_rows * pitch_y + footer_px
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    titles = []
    for r, row in enumerate(grid):
        top = title_px + header_px + r * pitch_y + pitch_y - cell_h
        for c, cell in enumerate(row):
            if cell is None:
                continue
            left = GAP + c * pitch_x
            canvas[top:top + cell_h, left:left + cell_w] = _rgb8(overlay_rgb(cell.image, cell.values, limit)).repeat(ZOOM, 0).repeat(ZOOM, 1)
            titles.append((left + cell_w / 2, top - 2, cell.title, cell.color))
    bar = None
    if footer_px > 10:
        bar = (width - 300) // 2, height - footer_px + 12, 300, 10  # left, top, width, height
        ramp = _colormap()(np.linspace(0, 1, bar[2]))[None].repeat(bar[3], axis=0)
        canvas[bar[1]:bar[1] + bar[3], bar[0]:bar[0] + bar[2]] = _rgb8(ramp[..., 3:] * ramp[..., :3] + (1 - ramp[..., 3:]))

    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    draw.multiline_text((width / 2, 6), title, fill="black", anchor="ma", align="center", font=_fitted_font(draw, title, width - 8, 13))
    for c, name in enumerate(column_names or []):
        draw.multiline_text((GAP + c * pitch_x + cell_w / 2, title_px + header_px - 2), name, fill="black", anchor="md",
                            align="center", font=_fitted_font(draw, name, pitch_x - 2))
    for x, y, text, color in titles:
        draw.multiline_text((x, y), text, fill=color, anchor="md", align="center", font=_fitted_font(draw, text, pitch_x - 2))
    if bar is not None:
        left, top, bar_w, bar_h = bar
        for fraction, value in ((0.0, -limit), (0.5, 0.0), (1.0, limit)):
            draw.text((left + fraction * (bar_w - 1), top + bar_h + 2), f"{value:.1e}", fill="black", anchor="ma", font=_font(10))
        draw.text((width / 2, top + bar_h + 16), bar_label, fill="black", anchor="ma", font=_font(10))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def image_plot(path: Path, images: np.ndarray, values: np.ndarray, titles: Sequence[str], suptitle: str,
               columns: int = 10) -> Path:
    """One row's explanations: each image under its attribution overlay, `columns` per line."""
    cells = [Cell(images[i], values[i], titles[i]) for i in range(len(images))]
    grid = [cells[start:start + columns] for start in range(0, len(cells), columns)] or [[]]
    return render_mosaic(path, grid, suptitle, "SHAP value (explained class probability)")


def comparison_grid(path: Path, images: np.ndarray, true_labels: Sequence[int],
                    columns: Sequence[tuple[str, np.ndarray, Sequence[int]]], class_names: Sequence[str]) -> Path:
    """Rows = images, columns = explanations (name, values (N,H,W,C), predicted labels).

    The first column is the image with its true label; a cell's title is that column's predicted
    label, red when wrong. All cells share one symmetric colour scale.
    """
    grid: list[list[Cell | None]] = []
    for r in range(len(images)):
        true = int(true_labels[r])
        row: list[Cell | None] = [Cell(images[r], None, f"true: {short_label(class_names[true])}")]
        for _, values, predicted in columns:
            pred = int(predicted[r])
            row.append(Cell(images[r], values[r], f"pred: {short_label(class_names[pred])}", "black" if pred == true else "red"))
        grid.append(row)
    return render_mosaic(path, grid, "SHAP attributions of the true class, every variant on the same images",
                         "SHAP value (shared scale)", ["image", *(str(name) for name, _, _ in columns)])


def flip_gallery(path: Path, images: np.ndarray, true_labels: Sequence[int], baseline_predicted: Sequence[int],
                 predicted: Sequence[int], values: np.ndarray, baseline_values: np.ndarray | None,
                 class_names: Sequence[str], title: str) -> Path:
    """Images whose top-1 flipped between the baseline and a variant: image | baseline | variant
    attributions of the true class (the baseline column is left out when not given)."""
    grid: list[list[Cell | None]] = []
    for r in range(len(images)):
        true = int(true_labels[r])
        row: list[Cell | None] = [Cell(images[r], None, f"true: {short_label(class_names[true])}")]
        sources = [("baseline", baseline_values, baseline_predicted)] if baseline_values is not None else []
        for name, vals, preds in [*sources, ("variant", values, predicted)]:
            pred = int(preds[r])
            row.append(Cell(images[r], vals[r], f"{name}: {short_label(class_names[pred])}", "black" if pred == true else "red"))
        grid.append(row)
    names = ["image", *(["baseline"] if baseline_values is not None else []), "variant"]
    return render_mosaic(path, grid or [[]], title, "SHAP value of the true class", names)
