"""Recording half of the explanation stage: turns explanation-worker results into each row's
`explanation` block, drift against the reference, and the plots (see bench/explain_stage.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.files import atomic_write_json
from bench.results import artifact_path, file_inside, key_slug, row_key

OUT = "explanations"


def slug_of(row: dict[str, Any]) -> str:
    return key_slug(row_key(row))


def off_clean_difference(run_dir: Path, a: dict[str, Any], b: dict[str, Any]) -> tuple[float, int] | None:
    """(max abs logit difference, images) of rows a and b on the run's corrupted and adversarial
    test images (the logits the measurement saved); None when either has none.

    Why: an fp32 row reuses its variant's explanation because the two agree within the parity
    tolerance, which was checked on clean test images; SHAP feeds blurred and masked ones. The
    corrupted copies (blur, noise, contrast, ...) are the nearest inputs the run already has.
    """
    files = [run_dir / "logits" / f"{slug_of(row)}__robustness.npy" for row in (a, b)]
    if not all(f.is_file() for f in files):
        return None
    x, y = (np.load(f, allow_pickle=False) for f in files)
    if x.shape != y.shape or not len(x):
        return None
    return float(np.abs(x - y).max()), len(x)


class Recorder:
    """Builds the worker jobs and turns their results into row blocks, drift and plots.

    Results arrive in completion order from several workers; a row's drift needs the reference's
    values, so rows that end before the reference wait in `pending` until it is recorded.
    """

    def __init__(self, run_dir: Path, document: dict[str, Any], settings: dict[str, Any], indices: np.ndarray,
                 labels: np.ndarray, set_images: np.ndarray, reference: int | None, shared: dict[int, int],
                 flips: dict[int, dict[str, Any]], kept_reference_flips: dict[int, np.ndarray] | None = None,
                 off_clean: dict[int, tuple[float, int] | None] | None = None) -> None:
        self.run_dir, self.document, self.settings = run_dir, document, settings
        self.rows: list[dict[str, Any]] = document["rows"]
        self.indices, self.labels, self.set_images = indices, labels, set_images
        self.reference, self.shared, self.flips = reference, shared, flips
        self.off_clean = off_clean or {}  # shared row -> (max abs difference, images) off the clean test images
        self.names = [str(c) for c in (document.get("dataset") or {}).get("classes") or range(int(labels.max()) + 1)]
        self.reference_values: np.ndarray | None = None
        # the baseline's values of flipped images: an earlier explanation's (kept by --variant), then this one's
        self.reference_flips: dict[int, np.ndarray] = dict(kept_reference_flips or {})
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
        return {"runtime": row["runtime"], "device": row.get("device", "cpu"), "artifact": str(artifact_path(self.run_dir, row)),
                "input_spec": row["input_spec"], "images": str(images_file), "sets": sets, "masker": s["masker"],
                "max_evals": max_evals, "batch_size": s["batch_size"], "seed": seed, "threads": s["threads"],
                "one_at_a_time": "dynamic" in row["precision"], "deletion_steps": s["deletion_steps"]}

    def record(self, k: int, result: dict[str, Any]) -> None:
        """Take job k's result: fill blocks (or hold them for the reference), persist results.json."""
        kind, i = self.kinds[k]
        if kind == "reference_flips":
            if result["status"] == "ok":
                path = self._file(slug_of(self.rows[i]), ".flips.npy")
                self.reference_flips.update(zip(self.flip_union, np.load(self.run_dir / path, allow_pickle=False)))
                union = sorted(self.reference_flips)
                if union != self.flip_union:  # merged with kept values: the file holds them all
                    np.save(self.run_dir / path, np.stack([self.reference_flips[k] for k in union]), allow_pickle=False)
                self.document["explanation_set"]["reference_flips"] = {"indices": union, "values_file": path}
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
                note = f"fp32 artifact within parity of torch eager (max abs logit diff {diff})"
                if off_clean := self.off_clean.get(j):
                    note += f" and of {slug} on {off_clean[1]} corrupted and adversarial images ({off_clean[0]:.3g})"
                # what describes the source's own runtime (its time, load, how it was called) is not this row's
                self.rows[j]["explanation"] = {**block, "shared_from": slug, "seconds": 0.0, "seconds_per_image": None,
                                               "cpu_seconds_per_image": None, "load_s": None, "runtime_calls": None,
                                               "note": f"{note}; reuses {slug}"}

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

    def finish(self, started: float) -> None:
        """Flip galleries (the baseline's flip values are in by now), the comparison grid, totals
        (the stage's seconds since `started`, a time.perf_counter() value, plots included)."""
        from explain.plots import comparison_grid, flip_gallery

        raw = np.load(self.run_dir / "work" / "test_images.npy", mmap_mode="r", allow_pickle=False)
        columns = []
        for i, row in enumerate(self.rows):
            block = row.get("explanation") or {}
            values = file_inside(self.run_dir, block.get("values_file"))
            if block.get("status") != "ok" or block.get("shared_from") or values is None:
                continue
            name = f"{row['variant']}\n{row['format']} {row['precision']}\n{row['runtime']}"
            columns.append((name, np.load(values, allow_pickle=False), block["predicted"]))
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
        seconds = time.perf_counter() - started
        es.update(status="complete", seconds=round(seconds, 1), rows_explained=len(columns),
                  rows_shared=sum(1 for r in self.rows if (r.get("explanation") or {}).get("shared_from")))
        self.document.setdefault("stages", {})["explain_s"] = round(seconds, 1)
