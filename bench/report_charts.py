"""The report's charts as PNG bytes (matplotlib, Agg, no pyplot state).

Each function returns None when the run has nothing to draw (e.g. no ok rows, no raw samples),
so the report simply leaves that chart out. Figures are built with matplotlib's object API
(`Figure`), not pyplot: no global figure registry, no GUI backend, safe inside a long run.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from bench.report_table import Line

MARKERS = {"torch": "o", "onnx": "s", "tflite": "^"}
MAX_LABELS = 12


@contextmanager
def names_as_written() -> Iterator[None]:
    """Draw the run's names (class folders, variants) as they are: a '$' in one would start
    matplotlib's mathtext (and fail on anything but valid TeX), and a glyph the font lacks
    (a CJK class name) is drawn as a box instead of printing a warning."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        yield


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


# PNG text key under which the latency chart records which rows it was drawn from
DRAWN_FROM_KEY = "edgebench-latency-rows"


def _png(fig: Any, metadata: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata=metadata)  # a bare Figure renders through the Agg canvas
    return buffer.getvalue()


def _colours(lines: list[Line]) -> dict[str, Any]:
    from matplotlib import colormaps

    runtimes = sorted({str(line.row.get("runtime")) for line in lines})
    palette = colormaps["tab10"]
    return {rt: palette(i % 10) for i, rt in enumerate(runtimes)}


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower x (cost) and higher y (accuracy).

    >>> pareto_front([(1.0, 0.8), (2.0, 0.9), (3.0, 0.85), (0.5, 0.5)])
    [3, 0, 1]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _log_x(ax: Any) -> None:
    """Log x axis with plain-number labels on major ticks only (minor labels overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # 1-2-5 ticks: readable over any span
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _tradeoff(lines: list[Line], cost: list[float], xlabel: str, title: str) -> bytes:
    """Accuracy against a cost (latency or size), log x when it spans a decade, frontier marked."""
    fig = _figure(8, 5)
    ax = fig.add_subplot()
    colours = _colours(lines)
    accuracy = [line.top1 * 100 for line in lines]  # type: ignore[operator]
    front = pareto_front(list(zip(cost, accuracy)))
    # past a dozen points every label collides: then name the frontier and the reference only
    labelled = set(range(len(lines))) if len(lines) <= MAX_LABELS else set(front)
    for i, (line, x, y) in enumerate(zip(lines, cost, accuracy)):
        err = None
        if line.ci:
            err = [[max(0.0, y - line.ci[0] * 100)], [max(0.0, line.ci[1] * 100 - y)]]
        ax.errorbar([x], [y], yerr=err, fmt=MARKERS.get(str(line.row.get("format")), "D"), ms=7,
                    color=colours[str(line.row.get("runtime"))], ecolor=(0.6, 0.6, 0.6, 0.5), capsize=2)
        if i in labelled or line.is_reference:
            ax.annotate(line.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if len(labelled) < len(lines):
        title += "\n(labels on the frontier only; every row is in the table)"
    fx, fy = [cost[i] for i in front], [accuracy[i] for i in front]
    ax.step(fx, fy, where="post", color="crimson", lw=1.2, ls="--", label="Pareto frontier")
    ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="crimson", lw=1.5)
    if max(cost) / max(min(cost), 1e-12) > 10:
        _log_x(ax)
    for rt, colour in colours.items():
        ax.plot([], [], "o", color=colour, label=f"runtime {rt}")
    for fmt, marker in MARKERS.items():
        if any(line.row.get("format") == fmt for line in lines):
            ax.plot([], [], marker, color="0.4", label=f"format {fmt}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 accuracy, % (bars: 95% CI)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def accuracy_latency_chart(lines: list[Line]) -> bytes | None:
    """Top-1 against p50 latency at batch 1, for every ok row with both."""
    usable = [line for line in lines if line.status == "ok" and line.top1 is not None and line.p50]
    if not usable:
        return None
    return _tradeoff(usable, [line.p50 for line in usable], "p50 latency at batch 1, ms",  # type: ignore[misc]
                     "Accuracy vs latency (frontier: nothing is both faster and more accurate)")


def size_accuracy_chart(lines: list[Line]) -> bytes | None:
    """Top-1 against artifact size, for every ok row with both."""
    usable = [line for line in lines if line.status == "ok" and line.top1 is not None and line.row.get("size_bytes")]
    if not usable:
        return None
    return _tradeoff(usable, [line.row["size_bytes"] / 1024 for line in usable], "artifact size, KB",
                     "Accuracy vs size (frontier: nothing is both smaller and more accurate)")


def load_samples(run_dir: Path, line: Line) -> np.ndarray | None:
    """Raw batch-1 latency samples of a row (ms), or None when the file is absent or unusable: draw without it."""
    from bench.results import batch1_latency, read_latency_samples

    return read_latency_samples(run_dir, batch1_latency(line.row) or {})


def latency_rows_fingerprint(lines: list[Line]) -> str:
    """A hash of the rows' names and batch-1 latency entries (statistics and sample file), in order:
    what a latency chart shows. A chart drawn earlier is only as current as this value."""
    from bench.results import batch1_latency, row_name

    described = [[row_name(line.row), line.label, batch1_latency(line.row)] for line in lines]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()[:16]


def drawn_from(png: bytes) -> str | None:
    """The `latency_rows_fingerprint` a latency chart was drawn with (None for any other PNG)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png)) as image:  # reads the chunks before the pixels, decodes none
            value = image.info.get(DRAWN_FROM_KEY)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError):
        return None  # (Pillow reports some broken PNGs as SyntaxError)
    return value if isinstance(value, str) else None


def latency_distribution_chart(lines: list[Line], run_dir: Path) -> bytes | None:
    """Box plots of the raw batch-1 samples, one per ok row (whiskers 1st-99th percentile). The PNG
    records the rows drawn (`drawn_from`), so a report rebuilt after the samples were removed can
    tell whether this chart still shows its rows."""
    data = [(line, s) for line in lines if line.status == "ok" and (s := load_samples(run_dir, line)) is not None]
    if not data:
        return None
    fig = _figure(8, 1.2 + 0.35 * len(data))
    ax = fig.add_subplot()
    colours = _colours([line for line, _ in data])
    box = ax.boxplot([s for _, s in data], orientation="horizontal", whis=(1, 99), showfliers=True,
                     flierprops={"markersize": 2, "alpha": 0.4}, patch_artist=True, widths=0.6,
                     medianprops={"color": "black"})
    for patch, (line, _) in zip(box["boxes"], data):
        patch.set_facecolor(colours[str(line.row.get("runtime"))])
        patch.set_alpha(0.6)
    ax.set_yticks(range(1, len(data) + 1), [f"{line.label} (n={len(s)})" for line, s in data], fontsize=7)
    ax.invert_yaxis()  # table order, top to bottom
    values = np.concatenate([s for _, s in data])
    if values.min() > 0 and values.max() / values.min() > 10:
        _log_x(ax)
    ax.set_xlabel("latency per call at batch 1, ms (box: quartiles, whiskers: p1-p99)")
    ax.set_title("Latency distributions from the raw samples")
    ax.grid(alpha=0.3, axis="x")
    return _png(fig, {DRAWN_FROM_KEY: latency_rows_fingerprint([line for line, _ in data])})


def per_class_delta_chart(lines: list[Line], classes: list[str]) -> bytes | None:
    """Heatmap of per-class top-1 minus the reference baseline's, in percentage points."""
    ref = next((line for line in lines if line.is_reference), None)
    ref_pc = (ref.row.get("accuracy") or {}).get("per_class_top1") if ref else None
    if not ref_pc:
        return None
    rows = [(line, pc) for line in lines if line.status == "ok" and not line.is_reference
            and (pc := (line.row.get("accuracy") or {}).get("per_class_top1")) and len(pc) == len(ref_pc)]
    if not rows:
        return None
    delta = (np.array([pc for _, pc in rows], dtype=np.float64) - np.asarray(ref_pc, dtype=np.float64)) * 100
    names = classes if len(classes) == len(ref_pc) else [str(i) for i in range(len(ref_pc))]
    fig = _figure(max(6.0, 0.7 * len(names) + 3), 1.5 + 0.4 * len(rows))
    ax = fig.add_subplot()
    limit = max(1.0, float(np.abs(delta).max()))
    image = ax.imshow(delta, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    if delta.size <= 400:  # numbers stay readable up to about 40 rows of 10 classes
        for (i, j), value in np.ndenumerate(delta):
            ax.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(value) > 0.6 * limit else "black")
    ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [line.label for line, _ in rows], fontsize=7)
    fig.colorbar(image, ax=ax, label="Δ per-class top-1, pt")
    ax.set_title(f"Per-class accuracy vs {ref.label}")  # type: ignore[union-attr]
    return _png(fig)
