"""Run the isolated worker for one row and turn its output into the row's measurements."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.artifacts import check_artifact
from bench.config import BenchmarkConfig
from bench.errors import ModelFileError
from bench.results import Row, artifact_path, row_name
from bench.runtimes import XNNPACK_NOTICE
from bench.stats import classification_metrics


@dataclass(frozen=True)
class Timing:
    warmup_calls: int
    warmup_seconds: float
    min_calls: int
    min_seconds: float
    max_seconds: float
    throughput_seconds: float

    @classmethod
    def from_config(cls, cfg: BenchmarkConfig, quick: bool) -> "Timing":
        if quick:  # --quick: enough samples for a smoke run, not for publishing
            return cls(3, 0.05, min(cfg.min_calls, 50), min(cfg.min_seconds, 0.2), 2.0, min(cfg.throughput_seconds, 0.2))
        return cls(cfg.warmup_calls, cfg.warmup_seconds, cfg.min_calls, cfg.min_seconds, cfg.max_seconds,
                   cfg.throughput_seconds)

    def latency(self) -> dict[str, Any]:
        """bench.worker.time_calls arguments of each latency setting."""
        return {"warmup_calls": self.warmup_calls, "warmup_seconds": self.warmup_seconds, "min_calls": self.min_calls,
                "min_seconds": self.min_seconds, "max_seconds": self.max_seconds}

    def throughput(self) -> dict[str, Any]:
        """time_calls arguments of the throughput timing. It runs after the latency timings, on a warm
        artifact, so a few warm-up calls do; each call carries a whole batch, hence a twentieth of min_calls."""
        return {"warmup_calls": min(3, self.warmup_calls), "warmup_seconds": 0.0, "min_calls": max(10, self.min_calls // 20),
                "min_seconds": self.throughput_seconds, "max_seconds": self.max_seconds}


@dataclass(frozen=True)
class Paired:
    """How each row is timed against its runtime's baseline row, interleaved (see bench.abtest)."""

    rounds: int
    calls_per_block: int

    @classmethod
    def from_config(cls, cfg: BenchmarkConfig, quick: bool) -> "Paired":
        if quick:
            return cls(min(cfg.paired_rounds, 4), min(cfg.paired_calls, 20))
        return cls(cfg.paired_rounds, cfg.paired_calls)


class WorkerFailed(RuntimeError):
    """The worker process crashed or reported an error; the message says how."""


def file_facts(path: Path) -> tuple[int, int, str]:
    """Bytes on disk, gzip-compressed bytes (where unstructured sparsity pays off) and sha256 (which
    file a row measured)."""
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=6, mtime=0)), hashlib.sha256(data).hexdigest()


def latency_settings(cfg: BenchmarkConfig, slug: str, samples_dir: Path) -> list[dict[str, Any]]:
    """The worker's (batch size, threads) settings, fewest threads and smallest batch first: the first
    one is also where the worker measures memory and throughput, whatever the config's order."""
    return [{"batch_size": b, "threads": t, "samples_out": str(samples_dir / f"{slug}__b{b}_t{t}.npy")}
            for t in sorted(cfg.threads) for b in sorted(cfg.batch_sizes)]


def run_worker(row: Row, run_dir: Path, images_file: Path, cfg: BenchmarkConfig, timing: Timing,
               throughput_batch: int, extra_images: Path | None = None, timeout_s: float = 900,
               paired: Paired | None = None, reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure `row.artifact` in a fresh Python process; WorkerFailed on a crash or timeout.

    With `reference` (an ok row of the same runtime, as a dict) and `paired.rounds` > 0, the worker
    also times this artifact interleaved with the reference's artifact (`result["paired"]`).
    """
    work = run_dir / "work"
    samples_dir = run_dir / "samples"
    for d in (work, samples_dir, run_dir / "logits"):
        d.mkdir(parents=True, exist_ok=True)
    settings = latency_settings(cfg, row.slug, samples_dir)
    job = {"runtime": row.runtime, "device": row.device, "artifact": str(run_dir / str(row.artifact)),  # made by this run
           "input_spec": row.input_spec, "images": str(images_file), "eval_batch": cfg.eval_batch,
           "eval_threads": cfg.eval_threads or usable_cores(),
           "throughput_batch": throughput_batch, "settings": settings, "timing": timing.latency(),
           "throughput_timing": timing.throughput(),
           "logits_out": str(run_dir / "logits" / f"{row.slug}.npy"),
           "extra_images": str(extra_images) if extra_images else None,
           "extra_logits_out": str(run_dir / "logits" / f"{row.slug}__robustness.npy"), "paired": None}
    if paired and paired.rounds and reference:
        job["paired"] = {"rounds": paired.rounds, "calls_per_block": paired.calls_per_block,
                         "reference": row_name(reference), "artifact": str(artifact_path(run_dir, reference)),
                         "input_spec": reference["input_spec"]}
    try:  # pure-Python checks: a corrupt or hostile file becomes a clear reason, not a native crash
        check_artifact(run_dir / str(row.artifact), row.format)
        if job["paired"]:  # a resumed run's reference comes from results.json: checked like the row's own
            check_artifact(Path(job["paired"]["artifact"]), reference["format"])
    except ModelFileError as exc:
        raise WorkerFailed(f"artifact rejected before loading: {exc}") from None
    job_file, out_file = work / f"{row.slug}.job.json", work / f"{row.slug}.out.json"
    job_file.write_text(json.dumps(job))
    out_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-m", "bench.worker", str(job_file), str(out_file)],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise WorkerFailed(f"worker timed out after {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not out_file.exists():
        raise WorkerFailed(worker_failure(proc.returncode, proc.stderr))
    result = json.loads(out_file.read_text())
    job_file.unlink(missing_ok=True)
    out_file.unlink(missing_ok=True)
    return result


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container may restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_failure(returncode: int, stderr: str) -> str:
    """The reason of a row whose worker died: how it ended and the last thing it said, skipping
    LiteRT's XNNPACK notice (printed by every TFLite worker, so it says nothing about the failure)."""
    tail = [line for line in stderr.strip().splitlines() if line.strip() and XNNPACK_NOTICE not in line][-1:] or ["no message"]
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
    return f"runtime process failed ({how}): {tail[0][:300]}"


def apply_worker_result(row: Row, result: dict[str, Any], run_dir: Path) -> np.ndarray:
    """Copy timings and memory into the row; return the logits the worker computed."""
    row.load_ms = round(result["load_ms"], 3)
    row.first_inference_ms = round(result["first_inference_ms"], 3)
    row.memory = result["memory"]
    row.throughput = result["throughput"]
    row.latency = [{"batch_size": e["batch_size"], "threads": e["threads"], "unit": "ms",
                    "warmup": e["warmup"], **e["stats"],
                    "samples_file": str(Path(e["samples"]).relative_to(run_dir))} for e in result["latency"]]
    if result.get("paired"):
        row.speedup_paired = result["paired"]
    elif result.get("paired_error"):
        row.notes.append(f"paired timing against the baseline failed: {result['paired_error']}")
    if result.get("nonfinite_inputs"):
        row.notes.append(f"{result['nonfinite_inputs']} test inputs were NaN/inf after the input_spec")
    if result["nonfinite_outputs"]:
        row.notes.append(f"{result['nonfinite_outputs']} test images gave NaN/inf logits (counted as wrong)")
    return np.load(run_dir / "logits" / f"{row.slug}.npy", allow_pickle=False)


def accuracy_block(logits: np.ndarray, labels: np.ndarray, num_classes: int,
                   baseline_predictions: np.ndarray | None) -> dict[str, Any]:
    finite = np.isfinite(logits).all(axis=1)
    predictions = np.where(finite, np.nan_to_num(logits).argmax(axis=1), -1)
    # -1: a NaN/inf row is a wrong prediction in every metric, never a prediction of class 0
    metrics = classification_metrics(labels, predictions, num_classes, baseline_predictions)
    if not finite.all():
        metrics["nonfinite"] = int((~finite).sum())
    return metrics


def parity_block(logits: np.ndarray, reference: np.ndarray, reference_name: str, n: int) -> dict[str, Any]:
    """Max abs logit difference and top-1 agreement on the first n images against a reference."""
    a, b = logits[:n], reference[:n]
    return {"reference": reference_name, "n": int(len(a)), "max_abs_diff": float(np.abs(a - b).max()),
            "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean())}
