"""PNG plots of attributions (matplotlib, Agg backend): per-row image plots, the variant
comparison grid and the flip gallery.

Attributions are drawn the way shap's image_plot draws them: the image in faint grey, and on top
red where a pixel raises the explained class's probability, blue where it lowers it, transparent
near zero. Every plot uses one symmetric colour scale for all its panels, so colours compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

CELL_INCHES = 1.25


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display, safe in workers and CI
    import matplotlib.pyplot as plt

    return plt


def _colormap() -> Any:
    from matplotlib.colors import LinearSegmentedColormap

    # blue (negative) -> transparent (zero) -> red (positive), shap's red_transparent_blue in spirit
    return LinearSegmentedColormap.from_list(
        "red_transparent_blue", [(0.0, (0.0, 0.54, 0.98, 1.0)), (0.5, (1.0, 1.0, 1.0, 0.0)), (1.0, (1.0, 0.0, 0.32, 1.0))])


def symmetric_limit(*arrays: np.ndarray, percentile: float = 99.5) -> float:
    """One colour limit for all panels: a high percentile of |attribution| (a single extreme
    pixel would otherwise wash every other panel out); never zero."""
    flat = np.concatenate([np.abs(_2d_stack(a)).ravel() for a in arrays if a is not None and np.size(a)])
    limit = float(np.percentile(flat, percentile)) if flat.size else 0.0
    return limit if limit > 0 else 1e-12


def _2d_stack(values: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W) summed over channels."""
    v = np.asarray(values, dtype=np.float64)
    return v.sum(axis=-1) if v.ndim == 4 else v


def _gray(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    return img.mean(axis=-1) if img.ndim == 3 else img


def _panel(ax: Any, image: np.ndarray, values: np.ndarray | None, limit: float, title: str, color: str = "black") -> Any:
    ax.imshow(_gray(image), cmap="gray", vmin=0, vmax=255, alpha=0.35 if values is not None else 1.0)
    handle = None
    if values is not None:
        v = np.asarray(values, dtype=np.float64)
        handle = ax.imshow(v.sum(axis=-1) if v.ndim == 3 else v, cmap=_colormap(), vmin=-limit, vmax=limit)
    ax.set_title(title, fontsize=7, color=color)
    ax.axis("off")
    return handle


def short_label(name: str, width: int = 11) -> str:
    """A class name cut to fit a small panel's title."""
    return name if len(name) <= width else name[: width - 1] + "."


def _save(fig: Any, path: Path, handle: Any, label: str) -> None:
    plt = _pyplot()
    if handle is not None:
        bar = fig.colorbar(handle, ax=fig.axes, orientation="horizontal", shrink=0.6, aspect=40, label=label, format="%.1e")
        bar.ax.locator_params(nbins=3)  # few ticks: narrow figures would overlap their labels
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")  # tight: never clip the colour bar label
    plt.close(fig)


def image_plot(path: Path, images: np.ndarray, values: np.ndarray, titles: Sequence[str], suptitle: str,
               columns: int = 10) -> Path:
    """One row's explanations: each image under its attribution overlay, `columns` per line."""
    plt = _pyplot()
    n = len(images)
    cols = min(columns, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * CELL_INCHES, rows * CELL_INCHES + 1.2), squeeze=False, layout="constrained")
    limit = symmetric_limit(values)
    handle = None
    for i, ax in enumerate(axes.ravel()):
        if i < n:
            handle = _panel(ax, images[i], values[i], limit, titles[i]) or handle
        else:
            ax.axis("off")
    fig.suptitle(suptitle, fontsize=9)
    _save(fig, path, handle, "SHAP value (explained class probability)")
    return path


def comparison_grid(path: Path, images: np.ndarray, true_labels: Sequence[int],
                    columns: Sequence[tuple[str, np.ndarray, Sequence[int]]], class_names: Sequence[str]) -> Path:
    """Rows = images, columns = explanations (name, values (N,H,W,C), predicted labels).

    The first column is the image with its true label; a cell's title is that column's predicted
    label, red when wrong. All cells share one symmetric colour scale.
    """
    plt = _pyplot()
    n, k = len(images), len(columns)
    fig, axes = plt.subplots(n, k + 1, figsize=(max(k + 1, 4) * CELL_INCHES, n * CELL_INCHES + 1.6), squeeze=False, layout="constrained")
    limit = symmetric_limit(*[values for _, values, _ in columns])
    handle = None
    for r in range(n):
        true = int(true_labels[r])
        _panel(axes[r, 0], images[r], None, limit, f"true: {short_label(class_names[true])}")
        for c, (name, values, predicted) in enumerate(columns):
            pred = int(predicted[r])
            title = f"pred: {short_label(class_names[pred])}"
            if r == 0:
                title = f"{name}\n{title}"
            handle = _panel(axes[r, c + 1], images[r], values[r], limit, title, "black" if pred == true else "red") or handle
    fig.suptitle("SHAP attributions of the true class, every variant on the same images", fontsize=10)
    _save(fig, path, handle, "SHAP value (shared scale)")
    return path


def flip_gallery(path: Path, images: np.ndarray, true_labels: Sequence[int], baseline_predicted: Sequence[int],
                 predicted: Sequence[int], values: np.ndarray, baseline_values: np.ndarray | None,
                 class_names: Sequence[str], title: str) -> Path:
    """Images whose top-1 flipped between the baseline and a variant: image | baseline | variant
    attributions of the true class (the baseline column is left out when not given)."""
    plt = _pyplot()
    n = len(images)
    cols = 3 if baseline_values is not None else 2
    fig, axes = plt.subplots(max(n, 1), cols, figsize=(cols * CELL_INCHES * 1.4, max(n, 1) * CELL_INCHES + 1.6), squeeze=False, layout="constrained")
    limit = symmetric_limit(values, *([baseline_values] if baseline_values is not None else []))
    handle = None
    for r in range(n):
        true = int(true_labels[r])
        _panel(axes[r, 0], images[r], None, limit, f"true: {short_label(class_names[true])}")
        cells = [("baseline", baseline_values, baseline_predicted)] if baseline_values is not None else []
        cells.append(("variant", values, predicted))
        for c, (name, vals, preds) in enumerate(cells):
            pred = int(preds[r])
            handle = _panel(axes[r, c + 1], images[r], vals[r], limit, f"{name}: {short_label(class_names[pred])}",
                            "black" if pred == true else "red") or handle
    for ax in axes.ravel()[n * cols:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path, handle, "SHAP value of the true class")
    return path
