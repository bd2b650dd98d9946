"""The explanation stage of a run: SHAP on every ok row's deployed artifact, drift against the
baseline, deletion faithfulness, plots; results.json rewritten after every row.

It needs only the run folder: results.json, artifacts/, logits/ and the raw test images and
labels (work/test_images.npy, work/test_labels.npy). The artifacts run in `bench.explain_worker`
processes; this module plans the jobs and writes the blocks.

Which rows get their own explanation: every ok row, except the fp32 rows of a variant other than
its primary fp32 row (ONNX on the CPU first, see _FORMAT_ORDER). An ok fp32 row passed parity
with torch eager on clean test images; if it also agrees with the primary within that tolerance on
the run's corrupted and adversarial copies (when the run made them), it reuses the primary's
explanation and says so (`shared_from`). Quantized and fp16 artifacts, and every pruned or
distilled variant, always get their own.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.artifacts import check_artifact
from bench.config import ExplainConfig
from bench.errors import ModelFileError, UserError, first_line
from bench.explain_worker import run_jobs
from bench.explain_record import OUT, Recorder, off_clean_difference, slug_of
from bench.progress import progress_bar
from bench.files import atomic_write_json
from bench.results import artifact_path, file_inside, row_name
from bench.resume import artifact_changed
from explain.drift import choose_flips
from explain.shap_explain import choose_explanation_set

# [explain]'s defaults (one source: bench.config.ExplainConfig) for the keys a run's config may lack
# (runs from older edgebench), plus the threads of each explanation process
DEFAULTS: dict[str, Any] = {**{k: getattr(ExplainConfig(), k) for k in ("masker", "batch_size", "flip_gallery", "drift_threshold",
                                                                       "deletion_steps", "share_fp32", "workers", "job_timeout_s")},
                            "threads": 1}
# The primary fp32 row of a variant (explained for all its fp32 rows): ONNX Runtime first. Every ok
# fp32 row matches torch eager within the parity tolerance, so any could serve; ORT is the cheapest
# to run (no torch import in the worker, lowest per-call overhead), then torch, then LiteRT.
_FORMAT_ORDER = {"onnx": 0, "torch": 1, "tflite": 2}
_SET_KEYS = ("indices", "masker", "max_evals", "seed", "batch_size")  # what makes explanations comparable


def missing_dependencies() -> list[str]:
    """Packages the explanation stage needs that are not installed (empty when it can run).
    Cheap (no imports): call it before a run to fail fast rather than after measuring."""
    import importlib.util

    needed = {"shap": "shap", "opencv-python-headless": "cv2", "matplotlib": "matplotlib", "scipy": "scipy"}
    return [package for package, module in needed.items() if importlib.util.find_spec(module) is None]


def load_labels(run_dir: Path, n: int) -> np.ndarray:
    """The test labels the pipeline saved beside the test images (work/test_labels.npy, int64)."""
    path = run_dir / "work" / "test_labels.npy"
    if not path.is_file():
        raise UserError(f"{path} is missing: the explanation stage needs the run's test labels (saved by `edgebench run`)")
    try:
        labels = np.load(path, allow_pickle=False).astype(np.int64)
    except (OSError, ValueError, TypeError, EOFError) as exc:  # truncated, an object array (not unpickled), not a .npy
        raise UserError(f"{path} cannot be read as the run's test labels ({first_line(exc)})") from None
    if labels.shape != (n,):
        raise UserError(f"{path} holds {labels.shape} labels for {n} test images")
    return labels


def plan_rows(rows: list[dict[str, Any]], baseline: str, variant: str | None, share_fp32: bool,
              agree: Callable[[int, int], bool] | None = None) -> tuple[int | None, list[int], dict[int, int]]:
    """(reference row, rows to explain with the reference first, {shared row: row it reuses}).

    `agree(i, source)`, when given, must also hold for fp32 row i to reuse its source's explanation.
    """
    ok = [i for i, r in enumerate(rows) if r.get("status") == "ok" and r.get("artifact")]
    primary: dict[str, int] = {}
    for i in sorted(ok, key=lambda i: (_FORMAT_ORDER.get(rows[i]["format"], 9), rows[i].get("device", "cpu") != "cpu", i)):
        if rows[i]["precision"] == "fp32":
            primary.setdefault(rows[i]["variant"], i)
    reference = primary.get(baseline)

    def source_of(i: int) -> int | None:
        """The primary fp32 row whose explanation fp32 row i reuses (None: it gets its own)."""
        source = primary.get(rows[i]["variant"])
        if not share_fp32 or rows[i]["precision"] != "fp32" or source is None or source == i:
            return None
        return source if agree is None or agree(i, source) else None

    jobs: list[int] = []
    for i in ok:
        if variant is not None and rows[i]["variant"] != variant:
            continue
        own = source_of(i) or i  # a shared row's source must be explained (once)
        if own not in jobs:
            jobs.append(own)
    if reference is not None and reference not in jobs:
        jobs.append(reference)  # drift and flips need the baseline's values, even for one variant
    jobs.sort(key=lambda i: (i != reference, i))
    # every row sharing a recomputed explanation gets the new block (with --variant, the baseline's
    # other fp32 rows too: their reference is recomputed, so an old copy would go stale)
    shared = {i: source for i in ok if (source := source_of(i)) is not None and source in jobs}
    return reference, jobs, shared


class AgreementOffClean:
    """`agree(i, source)` for plan_rows: whether fp32 row i matches its variant's primary row `source`
    within its parity tolerance on the run's corrupted and adversarial images too (when the run has
    none, parity on clean images is all there is). Each row's difference is read once and kept in
    `differences` (row -> (max abs difference, images) or None), which the explanation notes quote."""

    def __init__(self, run_dir: Path, rows: list[dict[str, Any]]) -> None:
        self.run_dir, self.rows = run_dir, rows
        self.differences: dict[int, tuple[float, int] | None] = {}

    def __call__(self, i: int, source: int) -> bool:
        if i not in self.differences:  # a row's source is always its variant's primary row
            self.differences[i] = off_clean_difference(self.run_dir, self.rows[i], self.rows[source])
        difference, tolerance = self.differences[i], (self.rows[i].get("parity") or {}).get("tolerance")
        return difference is None or tolerance is None or difference[0] <= tolerance


def plan_flips(run_dir: Path, rows: list[dict[str, Any]], jobs: list[int], reference: int | None,
               limit: int) -> dict[int, dict[str, Any]]:
    """Per explained row: test images whose top-1 differs from the reference row's (from the
    logits the measurement saved), the count, and up to `limit` of them chosen for its gallery."""
    ref_file = run_dir / "logits" / f"{slug_of(rows[reference])}.npy" if reference is not None else None
    if ref_file is None or not ref_file.is_file():
        return {}
    base = saved_top1(ref_file)
    predicted = {}
    for i in jobs:
        own = run_dir / "logits" / f"{slug_of(rows[i])}.npy"
        if i != reference and own.is_file():
            predicted[i] = saved_top1(own, len(base))
    chosen = choose_flips({i: np.flatnonzero(base != p) for i, p in predicted.items()}, limit)
    return {i: {"n_flipped": int((base != p).sum()), "indices": chosen[i],
                "baseline_predicted": base[chosen[i]].tolist(), "predicted": p[chosen[i]].tolist()}
            for i, p in predicted.items()}


def saved_top1(path: Path, n: int | None = None) -> np.ndarray:
    """The top-1 classes of the logits a measured row saved (one row of class scores per test image);
    UserError naming the file when it is unreadable or not such a table (of `n` images, when given)."""
    try:
        logits = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated, an object array (not unpickled), not a .npy
        raise UserError(f"{path} cannot be read as a row's saved logits ({first_line(exc)})") from None
    if logits.ndim != 2 or logits.shape[1] < 2 or logits.dtype.kind not in "fiu" or (n is not None and len(logits) != n):
        expected = f"({n}, classes)" if n is not None else "(images, classes)"
        raise UserError(f"{path} holds {logits.dtype} logits of shape {logits.shape}; expected {expected} (was the run folder edited?)")
    return logits.argmax(axis=1)


def _set_block(settings: dict[str, Any], indices: np.ndarray, labels: np.ndarray, per_class: int, max_evals: int,
               seed: int, reference_slug: str | None) -> dict[str, Any]:
    """The run's explanation set: what every row's explanation shares (recorded for readers)."""
    return {"indices": indices.tolist(), "labels": labels[indices].tolist(), "per_class": per_class, "seed": seed,
            "masker": settings["masker"], "max_evals": max_evals, "batch_size": settings["batch_size"],
            "class": "true label",
            "explainer": "shap.Explainer(f, shap.maskers.Image(masker, (H, W, C))) -> Partition (Owen values)",
            "background": "none: the masker hides pixels with its own blur/inpainting of the same image",
            "pixel_space": "float (H, W, C) raw pixels 0..255; f = softmax(runtime predict(prepare_input(x, input_spec)))",
            "shap_version": _version("shap"), "images_file": f"{OUT}/images.npy", "images_layout": "NHWC uint8",
            "reference": reference_slug, "flip_gallery": settings["flip_gallery"],
            "drift_threshold": settings["drift_threshold"], "deletion_steps": settings["deletion_steps"], "status": "running"}


def explain_run(run_dir: Path, document: dict[str, Any], *, per_class: int, max_evals: int, seed: int,
                variant: str | None = None, quiet: bool = False, check_artifacts: bool = False, **extra: Any) -> None:
    """Explain every ok row of a run (or of one variant), fill each row's "explanation" block and
    the top-level "explanation_set", write plots, and persist results.json after every row.

    extra: any key of DEFAULTS (masker, batch_size, flip_gallery, drift_threshold, deletion_steps,
    share_fp32, threads, workers, job_timeout_s); `enabled` is accepted and ignored.
    Raises UserError on a bad run folder or a --variant recomputation with other settings, and with
    `check_artifacts` (`edgebench explain` on a finished run) on a missing or damaged artifact of a
    row it would explain, before anything is written: in a run, such a row gets a failed explanation.
    """
    settings = _settings(extra)
    run_dir, started = Path(run_dir), time.perf_counter()
    images_file, raw, labels = _run_images(run_dir)
    rows = document["rows"]
    if variant is not None and not any(r["variant"] == variant and r.get("status") == "ok" for r in rows):
        names = sorted({r["variant"] for r in rows if r.get("status") == "ok"})
        raise UserError(f"no ok rows of variant {variant!r} in {run_dir}; variants with ok rows: {', '.join(names) or 'none'}")
    indices = choose_explanation_set(labels, per_class, seed)
    agree = AgreementOffClean(run_dir, rows)
    reference, jobs, shared = plan_rows(rows, document["baseline"], variant, settings["share_fp32"], agree)
    if check_artifacts:
        _check_artifacts(run_dir, [rows[i] for i in jobs], [rows[i] for i in shared])
    new_set = _set_block(settings, indices, labels, per_class, max_evals, seed,
                         slug_of(rows[reference]) if reference is not None else None)
    previous = document.get("explanation_set")
    if variant is not None:
        _refuse_other_set(previous, new_set)
    # flips are chosen over every row a full run explains, so `--variant` picks the same gallery
    _, every_job, _ = plan_rows(rows, document["baseline"], None, settings["share_fp32"], agree)
    flips = {i: f for i, f in plan_flips(run_dir, rows, every_job, reference, settings["flip_gallery"]).items() if i in jobs}
    kept_flips = _reference_flips(run_dir, previous) if variant is not None else {}
    (run_dir / OUT).mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    set_images = np.asarray(raw[indices]).transpose(0, 2, 3, 1)
    np.save(run_dir / OUT / "images.npy", set_images, allow_pickle=False)
    if kept_flips:  # the other variants' galleries still need the baseline's values of their images
        new_set["reference_flips"] = previous["reference_flips"]
    document["explanation_set"] = new_set
    recorder = Recorder(run_dir, document, settings, indices, labels, set_images, reference, shared, flips, kept_flips,
                        agree.differences)
    tasks = recorder.tasks(jobs, images_file=images_file, max_evals=max_evals, seed=seed)
    atomic_write_json(run_dir / "results.json", document)
    with progress_bar(total=len(tasks), desc="explanations", unit="job", quiet=quiet) as bar:
        def on_result(k: int, result: dict[str, Any]) -> None:
            recorder.record(k, result)
            bar.update(1)

        run_jobs([job for _, _, job in tasks], run_dir / "logs" / "explain.log", on_result,
                 workers=settings["workers"], job_timeout_s=settings["job_timeout_s"])
    recorder.finish(started)
    atomic_write_json(run_dir / "results.json", document)


def _settings(extra: dict[str, Any]) -> dict[str, Any]:
    """DEFAULTS updated by explain_run's extra settings; TypeError on an unknown key (a caller's
    bug), UserError when the explanation packages are missing."""
    extra = {k: v for k, v in extra.items() if k != "enabled"}
    unknown = sorted(set(extra) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"explain_run: unknown settings {unknown}; known: {sorted(DEFAULTS)}")
    if missing := missing_dependencies():
        # `edgebench run` checks this before anything else and offers --no-explain; here only the install helps
        raise UserError(f"SHAP explanations need {', '.join(missing)}: pip install 'edgebench[explain]'")
    return {**DEFAULTS, **extra}


def _run_images(run_dir: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """The run's raw test images (their file, and memory-mapped) and their labels."""
    images_file = run_dir / "work" / "test_images.npy"
    if not images_file.is_file():
        raise UserError(f"{images_file} is missing: the explanation stage needs the run's raw test images")
    try:
        raw = np.load(images_file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # truncated, an object array (not unpickled), not a .npy
        raise UserError(f"{images_file} cannot be read as the run's test images ({first_line(exc)})") from None
    if raw.dtype != np.uint8 or raw.ndim != 4:
        raise UserError(f"{images_file} holds {raw.dtype} images of shape {raw.shape}; the run saved uint8 images (N, C, H, W)")
    return images_file, raw, load_labels(run_dir, len(raw))


def _refuse_other_set(previous: dict[str, Any] | None, new_set: dict[str, Any]) -> None:
    """UserError when a --variant recomputation would use other settings than the run's explanation
    set: its explanations would no longer be comparable with the other variants'."""
    differing = [k for k in _SET_KEYS if previous and previous.get(k) != new_set[k]]
    if differing:
        shown = ", ".join(_difference(k, _short(previous.get(k)), _short(new_set[k])) for k in differing)
        raise UserError(f"these settings differ from the run's explanation set ({shown}); "
                        "recompute every variant (omit --variant) so all explanations stay comparable")


def _check_artifacts(run_dir: Path, rows: list[dict[str, Any]], sharing: list[dict[str, Any]]) -> None:
    """UserError naming the first row whose artifact is gone, fails the byte checks or is not the file
    the row measured: explaining it would replace the row's explanation with one of another file
    (or a failed one). The `sharing` rows take another row's explanation without being loaded: their
    files need only be there and be the ones they measured."""
    for row, loaded in [*((r, True) for r in rows), *((r, False) for r in sharing)]:
        path = artifact_path(run_dir, row)
        if not path.is_file():
            raise ModelFileError(f"{row_name(row)}: its artifact {path} is missing; nothing was changed "
                                 "(explain needs the run's artifacts/ folder)")
        try:
            if loaded:
                check_artifact(path, row["format"])
        except ModelFileError as exc:
            raise ModelFileError(f"{row_name(row)}: {exc}; nothing was changed") from None
        if artifact_changed(row, path):
            raise ModelFileError(f"{row_name(row)}: its artifact {path} is not the file the run measured (its sha256 "
                                 "changed); nothing was changed (restore the file, or measure it again in a new run)")


def _reference_flips(run_dir: Path, previous: dict[str, Any] | None) -> dict[int, np.ndarray]:
    """{test image: the baseline's SHAP values} recorded by an earlier explanation of this run, or {}."""
    block = (previous or {}).get("reference_flips") or {}
    path = file_inside(run_dir, block.get("values_file"))
    if not block.get("indices") or path is None:
        return {}
    values = np.load(path, allow_pickle=False)
    return dict(zip((int(k) for k in block["indices"]), values)) if len(values) == len(block["indices"]) else {}


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _difference(key: str, run: str, now: str) -> str:
    return f"{key}: run {run}, now {now}" if run != now else f"{key}: other values"


def _short(value: object) -> str:
    """A setting for an error line: a list (the images' indices) by its length, not its contents."""
    return f"{len(value)} images" if isinstance(value, (list, tuple)) else repr(value)
