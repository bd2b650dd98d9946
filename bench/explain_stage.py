"""The explanation stage of a run: SHAP on every ok row's deployed artifact, drift against the
baseline, deletion faithfulness, plots; results.json rewritten after every row.

It needs only the run folder: results.json, artifacts/, logits/, work/test_images.npy and the
test labels (work/test_labels.npy, else the Fashion-MNIST IDX file the run read). The artifacts
run in `bench.explain_worker` processes; this module plans the jobs and writes the blocks.

Which rows get their own explanation: every ok row, except the fp32 rows of a variant other than
its primary fp32 row (ONNX on the CPU first, see _FORMAT_ORDER). An ok fp32 row passed parity
with torch eager, so it reuses the primary's explanation and says so (`shared_from`); quantized
and fp16 artifacts, and every pruned or distilled variant, always get their own.
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import UserError
from bench.explain_worker import run_jobs
from bench.results import Row, atomic_write_json
from explain.shap_explain import DEFAULT_BATCH_SIZE, DEFAULT_MASKER

OUT = "explanations"
DEFAULTS: dict[str, Any] = {"masker": DEFAULT_MASKER, "batch_size": DEFAULT_BATCH_SIZE, "flip_gallery": 8,
                            "drift_threshold": 0.5, "deletion_steps": 20, "share_fp32": True, "threads": 1,
                            "job_timeout_s": 600.0}
# Which fp32 row of a variant is explained for all its fp32 rows: ONNX Runtime first. Every ok fp32
# row matches torch eager within the parity tolerance, so any of them could serve; ORT is the
# cheapest to run (no torch import in the worker, lowest per-call overhead), then torch, then LiteRT.
_FORMAT_ORDER = {"onnx": 0, "torch": 1, "tflite": 2}
_SET_KEYS = ("indices", "masker", "max_evals", "seed", "batch_size")  # what makes two runs' explanations comparable


def slug_of(row: dict[str, Any]) -> str:
    return Row(**{k: v for k, v in row.items() if k in Row.__dataclass_fields__}).slug


def choose_images(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` seeded test-image indices of every class, grouped by class, ascending within it."""
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for cls in np.unique(labels):
        candidates = np.flatnonzero(labels == cls)
        picks.extend(sorted(rng.choice(candidates, size=min(per_class, len(candidates)), replace=False).tolist()))
    return np.asarray(picks, dtype=np.int64)


def load_labels(run_dir: Path, document: dict[str, Any], n: int) -> np.ndarray:
    """Test labels: work/test_labels.npy, else the first n of Fashion-MNIST's t10k labels."""
    saved = run_dir / "work" / "test_labels.npy"
    if saved.is_file():
        labels = np.load(saved, allow_pickle=False).astype(np.int64)
    elif document.get("dataset", {}).get("name") == "fashion-mnist":
        from bench.data import DEBIAN_FASHION_MNIST, read_idx

        source = Path(str(document["dataset"].get("source", "")).split(" -> ")[-1])
        names = ("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz")
        found = [d / name for d in (source, source / "raw", DEBIAN_FASHION_MNIST) for name in names if (d / name).is_file()]
        if not found:
            raise UserError(f"{saved} is missing and no Fashion-MNIST test labels were found in {source} or {DEBIAN_FASHION_MNIST}")
        labels = read_idx(found[0])[:n].astype(np.int64)
    else:
        raise UserError(f"{saved} is missing: the explanation stage needs the test labels of dataset {document.get('dataset', {}).get('name')!r}")
    if len(labels) != n:
        raise UserError(f"{len(labels)} test labels for {n} test images in {run_dir / 'work'}")
    return labels


def plan_rows(rows: list[dict[str, Any]], baseline: str, variant: str | None, share_fp32: bool) -> tuple[int | None, list[int], dict[int, int]]:
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
            i = source  # the row it reuses must be explained (once)
        if i not in jobs:
            jobs.append(i)
    if reference is not None and reference not in jobs:
        jobs.append(reference)  # drift and flips need the baseline's values, even for one variant
    jobs.sort(key=lambda i: (i != reference, i))
    return reference, jobs, shared


def _flips(run_dir: Path, rows: list[dict[str, Any]], i: int, reference: int | None, limit: int) -> dict[str, Any] | None:
    """Test images whose top-1 differs between the reference row and row i (first `limit`)."""
    if reference is None or i == reference or limit <= 0:
        return None
    files = [run_dir / "logits" / f"{slug_of(rows[j])}.npy" for j in (reference, i)]
    if not all(f.is_file() for f in files):
        return None
    base, mine = (np.load(f, allow_pickle=False).argmax(axis=1) for f in files)
    flipped = np.flatnonzero(base != mine)
    return {"n_flipped": int(flipped.size), "indices": flipped[:limit].tolist(),
            "baseline_predicted": base[flipped[:limit]].tolist(), "predicted": mine[flipped[:limit]].tolist()}


def explain_run(run_dir: Path, document: dict[str, Any], *, per_class: int, max_evals: int, seed: int,
                variant: str | None = None, quiet: bool = False, **extra: Any) -> None:
    """Explain every ok row of a run (or of one variant), fill each row's "explanation" block and
    the top-level "explanation_set", write plots, and persist results.json after every row.

    extra: masker, batch_size, flip_gallery, drift_threshold, deletion_steps, share_fp32, threads,
    job_timeout_s (see DEFAULTS); `enabled` is accepted and ignored. UserError on a bad run folder.
    """
    extra.pop("enabled", None)
    unknown = sorted(set(extra) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"explain_run: unknown settings {unknown}; known: {sorted(DEFAULTS)}")
    settings = {**DEFAULTS, **extra}
    run_dir = Path(run_dir)
    started = time.perf_counter()
    images_file = run_dir / "work" / "test_images.npy"
    if not images_file.is_file():
        raise UserError(f"{images_file} is missing: the explanation stage needs the run's raw test images")
    raw = np.load(images_file, mmap_mode="r", allow_pickle=False)
    labels = load_labels(run_dir, document, len(raw))
    rows = document["rows"]
    if variant is not None and not any(r["variant"] == variant and r.get("status") == "ok" for r in rows):
        names = sorted({r["variant"] for r in rows if r.get("status") == "ok"})
        raise UserError(f"no ok rows of variant {variant!r} in {run_dir}; variants with ok rows: {', '.join(names) or 'none'}")
    indices = choose_images(labels, per_class, seed)
    explanation_set = {
        "indices": indices.tolist(), "labels": labels[indices].tolist(), "per_class": per_class, "seed": seed,
        "masker": settings["masker"], "max_evals": max_evals, "batch_size": settings["batch_size"],
        "class": "true label", "explainer": "shap.Explainer(f, shap.maskers.Image(masker, (H, W, C))) -> Partition (Owen values)",
        "background": "none: the masker hides pixels with its own blur/inpainting of the same image",
        "pixel_space": "float (H, W, C) raw pixels 0..255; f = softmax(runtime predict(prepare_input(x, input_spec)))",
        "shap_version": _version("shap"), "images_file": f"{OUT}/images.npy",
        "flip_gallery": settings["flip_gallery"], "drift_threshold": settings["drift_threshold"],
        "deletion_steps": settings["deletion_steps"], "status": "running"}
    previous = document.get("explanation_set")
    if variant is not None and previous and any(previous.get(k) != explanation_set[k] for k in _SET_KEYS):
        raise UserError("these settings differ from the run's explanation set (images, masker, max_evals, seed or batch size); "
                        "recompute every variant (omit --variant) so all explanations stay comparable")
    reference, jobs, shared = plan_rows(rows, document["baseline"], variant, settings["share_fp32"])
    out_dir = run_dir / OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    set_images = np.asarray(raw[indices]).transpose(0, 2, 3, 1)
    np.save(out_dir / "images.npy", set_images, allow_pickle=False)
    explanation_set["reference"] = slug_of(rows[reference]) if reference is not None else None
    document["explanation_set"] = explanation_set
    flips = {i: _flips(run_dir, rows, i, reference, settings["flip_gallery"]) for i in jobs}
    recorder = Recorder(run_dir, document, settings, indices, labels, set_images, reference, shared, flips)
    job_list = [recorder.job(i, raw_file=images_file, max_evals=max_evals, seed=seed) for i in jobs]
    atomic_write_json(run_dir / "results.json", document)
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc="explanations", unit="row", disable=quiet) as bar:
        def on_result(k: int, result: dict[str, Any]) -> None:
            recorder.record(jobs[k], result)
            bar.set_postfix_str(slug_of(rows[jobs[k]]))
            bar.update(1)

        (run_dir / "logs").mkdir(exist_ok=True)
        run_jobs(job_list, run_dir / "work", run_dir / "logs" / "explain.log", on_result, job_timeout_s=settings["job_timeout_s"])
    recorder.finish(time.perf_counter() - started)
    atomic_write_json(run_dir / "results.json", document)


class Recorder:
    """Builds worker jobs, turns their results into row blocks (drift, plots), keeps results.json current."""

    def __init__(self, run_dir: Path, document: dict[str, Any], settings: dict[str, Any], indices: np.ndarray,
                 labels: np.ndarray, set_images: np.ndarray, reference: int | None, shared: dict[int, int],
                 flips: dict[int, dict[str, Any] | None]) -> None:
        self.run_dir, self.document, self.settings = run_dir, document, settings
        self.rows = document["rows"]
        self.indices, self.labels, self.set_images = indices, labels, set_images
        self.reference, self.shared, self.flips = reference, shared, flips
        self.class_names = list(document.get("dataset", {}).get("classes") or range(int(labels.max()) + 1))
        self.class_names = [str(c) for c in self.class_names]
        self.reference_values: np.ndarray | None = None
        self.reference_flips: dict[int, np.ndarray] = {}
        self.reference_flip_indices = sorted({k for f in flips.values() if f for k in f["indices"]})

    def job(self, i: int, *, raw_file: Path, max_evals: int, seed: int) -> dict[str, Any]:
        row, slug, s = self.rows[i], slug_of(self.rows[i]), self.settings
        sets = {"main": {"indices": self.indices.tolist(), "classes": self.labels[self.indices].tolist(),
                         "values_out": str(self.run_dir / OUT / f"{slug}.values.npy"),
                         "curves_out": str(self.run_dir / OUT / f"{slug}.deletion.npy")}}
        extra = self.reference_flip_indices if i == self.reference else (self.flips.get(i) or {}).get("indices", [])
        if extra:  # the baseline explains every variant's flips, so galleries can show both sides
            sets["flips"] = {"indices": list(extra), "classes": self.labels[list(extra)].tolist(),
                             "values_out": str(self.run_dir / OUT / f"{slug}.flips.npy")}
        return {"runtime": row["runtime"], "device": row.get("device", "cpu"), "artifact": str(self.run_dir / row["artifact"]),
                "input_spec": row["input_spec"], "images": str(raw_file), "sets": sets, "masker": s["masker"],
                "max_evals": max_evals, "batch_size": s["batch_size"], "seed": seed, "threads": s["threads"],
                "one_at_a_time": "dynamic" in row["precision"], "deletion_steps": s["deletion_steps"],
                "result_out": str(self.run_dir / "work" / f"{slug}.explain.json")}

    def record(self, i: int, result: dict[str, Any]) -> None:
        """Fill row i's block (and the blocks of rows sharing it) from a worker result; persist."""
        slug = slug_of(self.rows[i])
        if result["status"] == "ok":
            block = self._ok_block(i, slug, result)
        else:
            block = {"status": "failed", "reason": result["reason"], "shared_from": None}
        self.rows[i]["explanation"] = block
        for j, source in self.shared.items():
            if source == i:
                note = (f"fp32 artifact passed parity with torch eager ({(self.rows[j].get('parity') or {}).get('max_abs_diff', 'n/a')} max abs logit diff): "
                        f"reuses the explanation of {slug}")
                self.rows[j]["explanation"] = {**block, "shared_from": slug, "seconds": 0.0, "seconds_per_image": None, "note": note}
        atomic_write_json(self.run_dir / "results.json", self.document)

    def _ok_block(self, i: int, slug: str, result: dict[str, Any]) -> dict[str, Any]:
        from explain.drift import drift_metrics
        from explain.plots import image_plot

        main = result["sets"]["main"]
        values = np.load(self.run_dir / OUT / f"{slug}.values.npy", allow_pickle=False)
        if i == self.reference:
            self.reference_values = values
            if "flips" in result["sets"]:
                flip_values = np.load(self.run_dir / OUT / f"{slug}.flips.npy", allow_pickle=False)
                self.reference_flips = dict(zip(self.reference_flip_indices, flip_values))
                self.document["explanation_set"]["reference_flips"] = {"indices": self.reference_flip_indices, "values_file": f"{OUT}/{slug}.flips.npy"}
        true = self.labels[self.indices]
        titles = [f"{_short(self.class_names[t])}\n-> {_short(self.class_names[p])}" for t, p in zip(true, main["predicted"])]
        image_plot(self.run_dir / OUT / f"{slug}.png", self.set_images, values, titles,
                   f"{slug}\nSHAP of the true class (red raises its probability); titles: true -> predicted")
        drift = None
        if self.reference_values is not None:
            drift = {"reference": slug_of(self.rows[self.reference]),
                     **drift_metrics(self.reference_values, values, threshold=self.settings["drift_threshold"], image_ids=self.indices.tolist())}
        return {"status": "ok", "values_file": f"{OUT}/{slug}.values.npy", "images_file": f"{OUT}/images.npy",
                "plot": f"{OUT}/{slug}.png", "class_indices": true.tolist(), "base_values": main["base_values"],
                "outputs": main["outputs"], "predicted": main["predicted"],
                "drift": drift, **({} if drift else {"drift_reason": "the baseline's explanation is unavailable"}),
                "faithfulness": {**main["faithfulness"], "curves_file": f"{OUT}/{slug}.deletion.npy"},
                "flips": self._flip_block(i, slug, result), "seconds": result["seconds"], "load_s": result["load_s"],
                "seconds_per_image": round(float(np.mean(main["seconds_per_image"])), 4),
                "runtime_calls": "one image per call" if "dynamic" in self.rows[i]["precision"] else "batched",
                "shared_from": None}

    def _flip_block(self, i: int, slug: str, result: dict[str, Any]) -> dict[str, Any] | None:
        flips = self.flips.get(i)
        if not flips or "flips" not in result["sets"]:
            return flips
        from explain.plots import flip_gallery

        idx = flips["indices"]
        values = np.load(self.run_dir / OUT / f"{slug}.flips.npy", allow_pickle=False)
        base = np.stack([self.reference_flips[k] for k in idx]) if all(k in self.reference_flips for k in idx) else None
        images = np.load(self.run_dir / "work" / "test_images.npy", mmap_mode="r", allow_pickle=False)
        flip_gallery(self.run_dir / OUT / f"{slug}.flips.png", np.asarray(images[idx]).transpose(0, 2, 3, 1),
                     self.labels[idx], flips["baseline_predicted"], flips["predicted"], values, base, self.class_names,
                     f"{slug}\ntop-1 flips vs the baseline: {flips['n_flipped']} in the test set, first {len(idx)} shown")
        return {**flips, "true": self.labels[idx].tolist(), "values_file": f"{OUT}/{slug}.flips.npy", "plot": f"{OUT}/{slug}.flips.png"}

    def finish(self, seconds: float) -> None:
        """The comparison grid over every own (not shared) explanation, and the set's totals."""
        from explain.plots import comparison_grid

        columns = []
        for row in self.rows:
            block = row.get("explanation") or {}
            if block.get("status") == "ok" and not block.get("shared_from") and (self.run_dir / block["values_file"]).is_file():
                name = f"{row['variant']}\n{row['format']} {row['precision']}\n{row['runtime']}"
                columns.append((name, np.load(self.run_dir / block["values_file"], allow_pickle=False), block["predicted"]))
        es = self.document["explanation_set"]
        if columns:
            comparison_grid(self.run_dir / OUT / "comparison_grid.png", self.set_images, self.labels[self.indices], columns, self.class_names)
            es["comparison_grid"] = f"{OUT}/comparison_grid.png"
        es.update(status="complete", seconds=round(seconds, 1), rows_explained=len(columns),
                  rows_shared=sum(1 for r in self.rows if (r.get("explanation") or {}).get("shared_from")))
        self.document.setdefault("stages", {})["explain_s"] = round(seconds, 1)


def _short(name: str, width: int = 10) -> str:
    return name if len(name) <= width else name[: width - 1] + "."


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None
