"""The explanation stage of a run: SHAP on every ok row's deployed artifact, drift against the
baseline, deletion faithfulness, plots; results.json rewritten after every row.

It needs only the run folder: results.json, artifacts/, logits/ and the raw test images and
labels (work/test_images.npy, work/test_labels.npy). The artifacts run in `bench.explain_worker`
processes; this module plans the jobs and writes the blocks.

Which rows get their own explanation: every ok row, except the fp32 rows of a variant other than
its primary fp32 row (ONNX on the CPU first, see _FORMAT_ORDER). An ok fp32 row passed parity
with torch eager, so it reuses the primary's explanation and says so (`shared_from`); quantized
and fp16 artifacts, and every pruned or distilled variant, always get their own.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError
from bench.explain_worker import run_jobs
from bench.results import Row, atomic_write_json
from explain.drift import DEFAULT_THRESHOLD, choose_flips
from explain.shap_explain import DEFAULT_BATCH_SIZE, DEFAULT_MASKER, choose_explanation_set

OUT = "explanations"
DEFAULTS: dict[str, Any] = {"masker": DEFAULT_MASKER, "batch_size": DEFAULT_BATCH_SIZE, "flip_gallery": 8,
                            "drift_threshold": DEFAULT_THRESHOLD, "deletion_steps": 20, "share_fp32": True,
                            "threads": 1, "workers": min(2, os.cpu_count() or 1), "job_timeout_s": 600.0}
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


def slug_of(row: dict[str, Any]) -> str:
    return Row(**{k: v for k, v in row.items() if k in Row.__dataclass_fields__}).slug


def load_labels(run_dir: Path, n: int) -> np.ndarray:
    """The test labels the pipeline saved beside the test images (work/test_labels.npy, int64)."""
    path = run_dir / "work" / "test_labels.npy"
    if not path.is_file():
        raise UserError(f"{path} is missing: the explanation stage needs the run's test labels (saved by `edgebench run`)")
    labels = np.load(path, allow_pickle=False).astype(np.int64)
    if labels.shape != (n,):
        raise UserError(f"{path} holds {labels.shape} labels for {n} test images")
    return labels


def plan_rows(rows: list[dict[str, Any]], baseline: str, variant: str | None,
              share_fp32: bool) -> tuple[int | None, list[int], dict[int, int]]:
    """(reference row, rows to explain with the reference first, {shared row: row it reuses})."""
    ok = [i for i, r in enumerate(rows) if r.get("status") == "ok" and r.get("artifact")]
    primary: dict[str, int] = {}
    for i in sorted(ok, key=lambda i: (_FORMAT_ORDER.get(rows[i]["format"], 9), rows[i].get("device", "cpu") != "cpu", i)):
        if rows[i]["precision"] == "fp32":
            primary.setdefault(rows[i]["variant"], i)
    reference = primary.get(baseline)
    jobs, shared = [], {}
    for i in ok:
        if variant is not None and rows[i]["variant"] != variant:
            continue
        source = primary.get(rows[i]["variant"])
        if share_fp32 and rows[i]["precision"] == "fp32" and source is not None and source != i:
            shared[i] = source
        own = shared.get(i, i)  # a shared row's source must be explained (once)
        if own not in jobs:
            jobs.append(own)
    if reference is not None and reference not in jobs:
        jobs.append(reference)  # drift and flips need the baseline's values, even for one variant
    jobs.sort(key=lambda i: (i != reference, i))
    return reference, jobs, shared


def plan_flips(run_dir: Path, rows: list[dict[str, Any]], jobs: list[int], reference: int | None,
               limit: int) -> dict[int, dict[str, Any]]:
    """Per explained row: test images whose top-1 differs from the reference row's (from the
    logits the measurement saved), the count, and up to `limit` of them chosen for its gallery."""
    ref_file = run_dir / "logits" / f"{slug_of(rows[reference])}.npy" if reference is not None else None
    if ref_file is None or not ref_file.is_file():
        return {}
    base = np.load(ref_file, allow_pickle=False).argmax(axis=1)
    predicted = {}
    for i in jobs:
        own = run_dir / "logits" / f"{slug_of(rows[i])}.npy"
        if i != reference and own.is_file():
            predicted[i] = np.load(own, allow_pickle=False).argmax(axis=1)
    chosen = choose_flips({i: np.flatnonzero(base != p) for i, p in predicted.items()}, limit)
    return {i: {"n_flipped": int((base != p).sum()), "indices": chosen[i],
                "baseline_predicted": base[chosen[i]].tolist(), "predicted": p[chosen[i]].tolist()}
            for i, p in predicted.items()}


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
                variant: str | None = None, quiet: bool = False, **extra: Any) -> None:
    """Explain every ok row of a run (or of one variant), fill each row's "explanation" block and
    the top-level "explanation_set", write plots, and persist results.json after every row.

    extra: any key of DEFAULTS (masker, batch_size, flip_gallery, drift_threshold, deletion_steps,
    share_fp32, threads, workers, job_timeout_s); `enabled` is accepted and ignored.
    Raises UserError on a bad run folder or a --variant recomputation with other settings.
    """
    extra.pop("enabled", None)
    unknown = sorted(set(extra) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"explain_run: unknown settings {unknown}; known: {sorted(DEFAULTS)}")
    settings = {**DEFAULTS, **extra}
    if missing := missing_dependencies():
        raise UserError(f"SHAP explanations need {', '.join(missing)}: pip install 'edgebench[explain]' (or run with --no-explain)")
    run_dir, started = Path(run_dir), time.perf_counter()
    images_file = run_dir / "work" / "test_images.npy"
    if not images_file.is_file():
        raise UserError(f"{images_file} is missing: the explanation stage needs the run's raw test images")
    raw = np.load(images_file, mmap_mode="r", allow_pickle=False)
    labels = load_labels(run_dir, len(raw))
    rows = document["rows"]
    if variant is not None and not any(r["variant"] == variant and r.get("status") == "ok" for r in rows):
        names = sorted({r["variant"] for r in rows if r.get("status") == "ok"})
        raise UserError(f"no ok rows of variant {variant!r} in {run_dir}; variants with ok rows: {', '.join(names) or 'none'}")
    indices = choose_explanation_set(labels, per_class, seed)
    reference, jobs, shared = plan_rows(rows, document["baseline"], variant, settings["share_fp32"])
    new_set = _set_block(settings, indices, labels, per_class, max_evals, seed,
                         slug_of(rows[reference]) if reference is not None else None)
    previous = document.get("explanation_set")
    if variant is not None and previous and any(previous.get(k) != new_set[k] for k in _SET_KEYS):
        raise UserError("these settings differ from the run's explanation set (images, masker, max_evals, seed or batch size); "
                        "recompute every variant (omit --variant) so all explanations stay comparable")
    flips = plan_flips(run_dir, rows, jobs, reference, settings["flip_gallery"])
    (run_dir / OUT).mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    set_images = np.asarray(raw[indices]).transpose(0, 2, 3, 1)
    np.save(run_dir / OUT / "images.npy", set_images, allow_pickle=False)
    document["explanation_set"] = new_set
    recorder = Recorder(run_dir, document, settings, indices, labels, set_images, reference, shared, flips)
    tasks = recorder.tasks(jobs, images_file=images_file, max_evals=max_evals, seed=seed)
    atomic_write_json(run_dir / "results.json", document)
    from tqdm import tqdm

    with tqdm(total=len(tasks), desc="explanations", unit="job", disable=quiet) as bar:
        def on_result(k: int, result: dict[str, Any]) -> None:
            recorder.record(k, result)
            bar.update(1)

        run_jobs([job for _, _, job in tasks], run_dir / "logs" / "explain.log", on_result,
                 workers=settings["workers"], job_timeout_s=settings["job_timeout_s"])
    recorder.finish(time.perf_counter() - started)
    atomic_write_json(run_dir / "results.json", document)


class Recorder:
    """Builds the worker jobs and turns their results into row blocks, drift and plots.

    Results arrive in completion order from several workers; a row's drift needs the reference's
    values, so rows that end before the reference wait in `pending` until it is recorded.
    """

    def __init__(self, run_dir: Path, document: dict[str, Any], settings: dict[str, Any], indices: np.ndarray,
                 labels: np.ndarray, set_images: np.ndarray, reference: int | None, shared: dict[int, int],
                 flips: dict[int, dict[str, Any]]) -> None:
        self.run_dir, self.document, self.settings = run_dir, document, settings
        self.rows: list[dict[str, Any]] = document["rows"]
        self.indices, self.labels, self.set_images = indices, labels, set_images
        self.reference, self.shared, self.flips = reference, shared, flips
        self.names = [str(c) for c in (document.get("dataset") or {}).get("classes") or range(int(labels.max()) + 1)]
        self.reference_values: np.ndarray | None = None
        self.reference_flips: dict[int, np.ndarray] = {}
        self.flip_union = sorted({k for f in flips.values() for k in f["indices"]})
        self.kinds: list[tuple[str, int]] = []
        self.pending: list[tuple[int, dict[str, Any]]] | None = None

    def _file(self, slug: str, suffix: str) -> str:
        return f"{OUT}/{slug}{suffix}"

    def tasks(self, jobs: list[int], *, images_file: Path, max_evals: int, seed: int) -> list[tuple[str, int, dict[str, Any]]]:
        """(kind, row, worker job) for every row job, plus the baseline's explanations of all
        chosen flips as a job of its own, so it runs beside the others rather than after them."""
        out = []
        for i in jobs:
            slug = slug_of(self.rows[i])
            sets = {"main": {"indices": self.indices.tolist(), "classes": self.labels[self.indices].tolist(),
                             "values_out": str(self.run_dir / self._file(slug, ".values.npy")),
                             "curves_out": str(self.run_dir / self._file(slug, ".deletion.npy"))}}
            flip_idx = (self.flips.get(i) or {}).get("indices") or []
            if flip_idx:
                sets["flips"] = {"indices": flip_idx, "classes": self.labels[flip_idx].tolist(),
                                 "values_out": str(self.run_dir / self._file(slug, ".flips.npy"))}
            out.append(("row", i, self._job(i, sets, images_file, max_evals, seed)))
            if i == self.reference and self.flip_union:
                sets = {"flips": {"indices": self.flip_union, "classes": self.labels[self.flip_union].tolist(),
                                  "values_out": str(self.run_dir / self._file(slug, ".flips.npy"))}}
                out.append(("reference_flips", i, self._job(i, sets, images_file, max_evals, seed)))
        # Longest first, so no worker is left with a slow job at the end: the reference (everyone's
        # drift waits for it), its flips, then one-image-per-call (dynamic int8) rows, then the rest.
        out.sort(key=lambda t: (t[0] != "row" or t[1] != self.reference, t[0] != "reference_flips", not t[2]["one_at_a_time"]))
        self.kinds = [(kind, i) for kind, i, _ in out]
        self.pending = [] if self.reference in jobs else None
        return out

    def _job(self, i: int, sets: dict[str, Any], images_file: Path, max_evals: int, seed: int) -> dict[str, Any]:
        row, s = self.rows[i], self.settings
        return {"runtime": row["runtime"], "device": row.get("device", "cpu"), "artifact": str(self.run_dir / row["artifact"]),
                "input_spec": row["input_spec"], "images": str(images_file), "sets": sets, "masker": s["masker"],
                "max_evals": max_evals, "batch_size": s["batch_size"], "seed": seed, "threads": s["threads"],
                "one_at_a_time": "dynamic" in row["precision"], "deletion_steps": s["deletion_steps"]}

    def record(self, k: int, result: dict[str, Any]) -> None:
        """Take job k's result: fill blocks (or hold them for the reference), persist results.json."""
        kind, i = self.kinds[k]
        if kind == "reference_flips":
            if result["status"] == "ok":
                slug = slug_of(self.rows[i])
                self.reference_flips = dict(zip(self.flip_union, np.load(self.run_dir / self._file(slug, ".flips.npy"), allow_pickle=False)))
                self.document["explanation_set"]["reference_flips"] = {"indices": self.flip_union, "values_file": self._file(slug, ".flips.npy")}
            else:
                self.document["explanation_set"]["reference_flips"] = {"status": "failed", "reason": result["reason"]}
        elif self.pending is not None and i != self.reference:
            self.pending.append((i, result))
            return
        else:
            self._record_row(i, result)
            if i == self.reference and self.pending is not None:
                held, self.pending = self.pending, None
                for args in held:
                    self._record_row(*args)
        atomic_write_json(self.run_dir / "results.json", self.document)

    def _record_row(self, i: int, result: dict[str, Any]) -> None:
        if result["status"] == "ok":
            self.rows[i]["explanation"] = self._ok_block(i, slug_of(self.rows[i]), result)
        else:
            self.rows[i]["explanation"] = {"status": "failed", "reason": result["reason"], "shared_from": None}
        self._share(i)

    def _share(self, i: int) -> None:
        """Copy row i's block to the fp32 rows that reuse it."""
        block, slug = self.rows[i]["explanation"], slug_of(self.rows[i])
        for j, source in self.shared.items():
            if source == i and j != i:
                diff = (self.rows[j].get("parity") or {}).get("max_abs_diff")
                self.rows[j]["explanation"] = {**block, "shared_from": slug, "seconds": 0.0, "seconds_per_image": None,
                                               "cpu_seconds_per_image": None,
                                               "note": f"fp32 artifact within parity of torch eager (max abs logit diff {diff}); reuses {slug}"}

    def _ok_block(self, i: int, slug: str, result: dict[str, Any]) -> dict[str, Any]:
        from explain.drift import drift_metrics
        from explain.plots import image_plot, short_label

        main = result["sets"]["main"]
        values = np.load(self.run_dir / self._file(slug, ".values.npy"), allow_pickle=False)
        if i == self.reference:
            self.reference_values = values
        true = self.labels[self.indices]
        titles = [f"{short_label(self.names[t])}\n-> {short_label(self.names[p])}" for t, p in zip(true, main["predicted"])]
        image_plot(self.run_dir / self._file(slug, ".png"), self.set_images, values, titles,
                   f"{slug}\nSHAP of the true class (red raises its probability); titles: true -> predicted")
        block: dict[str, Any] = {
            "status": "ok", "values_file": self._file(slug, ".values.npy"), "images_file": f"{OUT}/images.npy",
            "plot": self._file(slug, ".png"), "class_indices": true.tolist(), "base_values": main["base_values"],
            "outputs": main["outputs"], "predicted": main["predicted"], "drift": None,
            "faithfulness": {**main["faithfulness"], "curves_file": self._file(slug, ".deletion.npy")},
            "flips": None, "seconds": result["seconds"], "load_s": result["load_s"],
            "seconds_per_image": round(float(np.mean(main["seconds_per_image"])), 4),
            "cpu_seconds_per_image": round(float(np.mean(main["cpu_seconds_per_image"])), 4),
            "runtime_calls": "one image per call" if "dynamic" in self.rows[i]["precision"] else "batched",
            "shared_from": None}
        if self.reference_values is not None:
            block["drift"] = {"reference": slug_of(self.rows[self.reference]),  # type: ignore[index]
                              **drift_metrics(self.reference_values, values, threshold=self.settings["drift_threshold"],
                                              image_ids=self.indices.tolist())}
        else:
            block["drift_reason"] = "no explanation of the baseline (no ok fp32 baseline row, or it failed)"
        if i in self.flips:
            block["flips"] = {**self.flips[i], "true": self.labels[self.flips[i]["indices"]].tolist()}
            if "flips" in result["sets"]:
                block["flips"]["values_file"] = self._file(slug, ".flips.npy")
        return block

    def finish(self, seconds: float) -> None:
        """Flip galleries (the baseline's flip values are in by now), the comparison grid, totals."""
        from explain.plots import comparison_grid, flip_gallery

        raw = np.load(self.run_dir / "work" / "test_images.npy", mmap_mode="r", allow_pickle=False)
        columns = []
        for i, row in enumerate(self.rows):
            block = row.get("explanation") or {}
            if block.get("status") != "ok" or block.get("shared_from") or not (self.run_dir / block["values_file"]).is_file():
                continue
            name = f"{row['variant']}\n{row['format']} {row['precision']}\n{row['runtime']}"
            columns.append((name, np.load(self.run_dir / block["values_file"], allow_pickle=False), block["predicted"]))
            flips = block.get("flips") or {}
            if flips.get("values_file") and i in self.flips:  # galleries of this stage's rows only
                idx, slug = flips["indices"], slug_of(row)
                base = np.stack([self.reference_flips[k] for k in idx]) if all(k in self.reference_flips for k in idx) else None
                flip_gallery(self.run_dir / self._file(slug, ".flips.png"), np.asarray(raw[idx]).transpose(0, 2, 3, 1),
                             flips["true"], flips["baseline_predicted"], flips["predicted"],
                             np.load(self.run_dir / flips["values_file"], allow_pickle=False), base, self.names,
                             f"{slug}\ntop-1 flips vs the baseline: {flips['n_flipped']} in the test set, {len(idx)} shown")
                flips["plot"] = self._file(slug, ".flips.png")
                self._share(i)
        es = self.document["explanation_set"]
        if columns:
            comparison_grid(self.run_dir / OUT / "comparison_grid.png", self.set_images, self.labels[self.indices], columns, self.names)
            es["comparison_grid"] = f"{OUT}/comparison_grid.png"
        es.update(status="complete", seconds=round(seconds, 1), rows_explained=len(columns),
                  rows_shared=sum(1 for r in self.rows if (r.get("explanation") or {}).get("shared_from")))
        self.document.setdefault("stages", {})["explain_s"] = round(seconds, 1)


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
