"""Measure one artifact on one runtime in an isolated process: `python -m bench.worker JOB.json OUT.json`.

Why a subprocess per row: peak RSS then belongs to that runtime alone, and a native loader that
crashes on an untrusted artifact (ORT, TFLite) kills this process, not the run; the parent turns
that into a `run_failed` row.

Order matters: memory is measured first (load + first inference), before the test set is read,
so the peak RSS reflects the runtime and model, not the evaluation data.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

from bench.errors import exception_line
from bench.inputs import prepare_input
from bench.files import save_array
from bench.runtimes import load
from bench.stats import DISTURBED_SPREAD, PAIRED_MIN_ROUNDS, latency_stats, ratio_spread


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    """This process's RSS high-water mark. VmHWM, not getrusage's ru_maxrss: ru_maxrss survives
    exec, so a worker forked from a parent holding torch would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def first_images(raw: np.ndarray, n: int) -> np.ndarray:
    """The first n images, repeated from the start when there are fewer (a --test-limit smaller
    than a batch size): a latency recorded at batch n is always timed on n images."""
    images = np.array(raw[:n])
    return images if len(images) == n else np.resize(images, (n, *images.shape[1:]))


def time_calls(fn: Callable[[], Any], *, warmup_calls: int, warmup_seconds: float, min_calls: int,
               min_seconds: float, max_seconds: float, record: dict[str, Any] | None = None) -> np.ndarray:
    """Per-call latencies in ms: warm up (both minimums), then time until both minimums are met.

    max_seconds caps a slow setting (0 = no cap); the caller records how many calls it got.
    `record`, when given, receives the number of warm-up calls made ("warmup").
    """
    start = time.perf_counter()
    calls = 0
    while calls < warmup_calls or time.perf_counter() - start < warmup_seconds:
        fn()
        calls += 1
    if record is not None:
        record["warmup"] = calls
    samples: list[float] = []
    begin = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - begin < min_seconds:
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
        if max_seconds and time.perf_counter() - begin > max_seconds and len(samples) >= 10:
            break
    return np.asarray(samples)


PAIRED_ATTEMPTS = 3  # timings of a disturbed pair (bench.stats.DISTURBED_SPREAD), at most


def _paired_speedup(job: dict[str, Any], predict: Callable[[np.ndarray], Any], raw: np.ndarray,
                    setting: dict[str, Any], max_seconds: float) -> dict[str, Any]:
    """Reference p50 / this p50 (> 1: this row is faster) from alternating blocks of calls
    (bench.abtest), at `setting`. The medians of separate rows minutes apart carry the machine's
    drift; this ratio does not.

    A disturbed timing (its rounds' spread, bench.stats.ratio_spread, above DISTURBED_SPREAD) is
    repeated, up to PAIRED_ATTEMPTS in all, and the steadiest attempt is kept: the one measured
    while the machine was quietest. The choice looks at the spread only, never at the speed-up.
    Every attempt is recorded in `attempts`, the kept one's index in `kept`. Timings of fewer than
    PAIRED_MIN_ROUNDS rounds are never judged (their 10-90% range is too noisy).

    `predict` must be loaded with the setting's thread count; the reference gets the same.
    `max_seconds` (0 = none) caps each timing like any latency setting; fewer rounds are recorded then.
    """
    from bench.abtest import paired_latency

    paired = job["paired"]
    images = first_images(raw, setting["batch_size"])
    reference = load(job["runtime"], paired["artifact"], setting["threads"], job["device"])
    x_ref, x_own = prepare_input(images, paired["input_spec"]), prepare_input(images, job["input_spec"])
    attempts = []
    for _ in range(PAIRED_ATTEMPTS):
        attempts.append(paired_latency(lambda: reference(x_ref), lambda: predict(x_own), rounds=paired["rounds"],
                                       calls_per_block=paired["calls_per_block"],
                                       warmup_calls=paired["calls_per_block"], max_seconds=max_seconds))
        last = attempts[-1]
        if last.rounds < PAIRED_MIN_ROUNDS or ratio_spread(last.ratio_p10_p90) <= DISTURBED_SPREAD:
            break
    del reference  # its session (and any threads it holds) must not compete with the throughput timing
    # the steadiest of the timings long enough to judge; a timing cut short by max_seconds has a
    # deceptively narrow range of a few ratios, so it is kept only when no timing is long enough
    judged = [i for i, t in enumerate(attempts) if t.rounds >= PAIRED_MIN_ROUNDS]
    kept = (min(judged, key=lambda i: ratio_spread(attempts[i].ratio_p10_p90)) if judged
            else max(range(len(attempts)), key=lambda i: attempts[i].rounds))
    timed = attempts[kept]
    return {"reference": paired["reference"], "batch_size": setting["batch_size"], "threads": setting["threads"],
            "speedup": timed.ratio_median, "speedup_p10_p90": list(timed.ratio_p10_p90),
            "reference_p50_ms": timed.a_p50_ms, "p50_ms": timed.b_p50_ms,
            "rounds": timed.rounds, "calls_per_block": timed.calls_per_block, "kept": kept,
            "attempts": [{"speedup": t.ratio_median, "speedup_p10_p90": list(t.ratio_p10_p90), "rounds": t.rounds}
                         for t in attempts]}


class _PhaseClock:
    """Seconds spent in each phase of a job, for the run log."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases, self.start = phases, time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = round(now - self.start, 2)
        self.start = now


class _Loaded:
    """The artifact loaded at one thread count; reloaded only when a setting asks for another."""

    def __init__(self, job: dict[str, Any], threads: int, predict: Callable[[np.ndarray], Any]) -> None:
        self.job, self.threads, self.predict = job, threads, predict

    def at(self, threads: int) -> Callable[[np.ndarray], Any]:
        if threads != self.threads:
            self.threads, self.predict = threads, load(self.job["runtime"], self.job["artifact"], threads, self.job["device"])
        return self.predict


def _load_and_first_inference(job: dict[str, Any], raw: np.ndarray, result: dict[str, Any]) -> _Loaded:
    """Load at the first setting's thread count, time the load and the first call, and record the
    memory high-water mark after inference at batch 1 and at the throughput batch."""
    rss_before = round(_rss_mb(), 1)
    threads = job["settings"][0]["threads"]
    t0 = time.perf_counter()
    predict = load(job["runtime"], job["artifact"], threads, job["device"])
    result["load_ms"] = (time.perf_counter() - t0) * 1e3
    one = prepare_input(np.array(raw[:1]), job["input_spec"])
    t0 = time.perf_counter()
    predict(one)
    result["first_inference_ms"] = (time.perf_counter() - t0) * 1e3
    predict(prepare_input(first_images(raw, job["throughput_batch"]), job["input_spec"]))
    result["memory"] = {"peak_rss_mb": round(_peak_rss_mb(), 1), "rss_before_load_mb": rss_before,
                        "measured": f"high-water mark after load and inference at batch 1 and {job['throughput_batch']}"}
    return _Loaded(job, threads, predict)


def _predict_in_batches(evaluate: Callable[[np.ndarray], Any], images: np.ndarray, job: dict[str, Any]) -> tuple[np.ndarray, int]:
    """Logits of every image, and how many inputs held a non-finite value after preparation."""
    logits, bad_inputs = [], 0
    for start in range(0, len(images), job["eval_batch"]):
        x = prepare_input(np.array(images[start:start + job["eval_batch"]]), job["input_spec"])
        if np.issubdtype(x.dtype, np.floating):  # e.g. a std of 0 in a hand-written input_spec
            bad_inputs += int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        logits.append(evaluate(x))
    return np.concatenate(logits).astype(np.float32), bad_inputs


def _predict_evaluation_sets(job: dict[str, Any], raw: np.ndarray, loaded: _Loaded, result: dict[str, Any]) -> None:
    """Predictions on the evaluation images (the full test set unless limited) and, when asked
    for, on the robustness sets. Nothing here is timed, so a second copy of the artifact runs them
    on every core (eval_threads); it is released before the timings, so its threads cannot
    compete with the timed calls."""
    same_threads = job["eval_threads"] == loaded.threads
    evaluate = loaded.predict if same_threads else load(job["runtime"], job["artifact"], job["eval_threads"], job["device"])
    logits, result["nonfinite_inputs"] = _predict_in_batches(evaluate, raw, job)
    save_array(job["logits_out"], logits)
    result["nonfinite_outputs"] = int((~np.isfinite(logits)).any(axis=1).sum())
    if job.get("extra_images"):
        extra = np.load(job["extra_images"], mmap_mode="r", allow_pickle=False)
        save_array(job["extra_logits_out"], _predict_in_batches(evaluate, extra, job)[0])
    del evaluate
    result["eval_threads"] = job["eval_threads"]


def _time_latency(job: dict[str, Any], raw: np.ndarray, loaded: _Loaded) -> list[dict[str, Any]]:
    """Latency per (batch size, threads) setting; the raw samples are saved beside the results."""
    timed = []
    for setting in job["settings"]:
        predict = loaded.at(setting["threads"])
        x = prepare_input(first_images(raw, setting["batch_size"]), job["input_spec"])
        made: dict[str, Any] = {}
        samples = time_calls(lambda: predict(x), **job["timing"], record=made)
        save_array(setting["samples_out"], samples)
        timed.append({**setting, "samples": setting["samples_out"], "stats": latency_stats(samples), "warmup": made["warmup"]})
    return timed


def _time_paired(job: dict[str, Any], raw: np.ndarray, loaded: _Loaded, result: dict[str, Any]) -> None:
    """Speed-up against the baseline's row on this runtime, timed interleaved, at the headline
    setting (the smallest batch at the fewest threads: what the report's speed-up columns use)."""
    headline = min(job["settings"], key=lambda s: (s["batch_size"], s["threads"]))
    try:
        result["paired"] = _paired_speedup(job, loaded.at(headline["threads"]), raw, headline, job["timing"]["max_seconds"])
    except Exception as exc:  # noqa: BLE001 - the row's own measurements stand; a note says why
        result["paired_error"] = exception_line(exc, 200)


def _time_throughput(job: dict[str, Any], raw: np.ndarray, loaded: _Loaded) -> dict[str, Any]:
    """Throughput at the throughput batch, at the first setting's thread count."""
    threads = job["settings"][0]["threads"]
    predict = loaded.at(threads)
    xb = prepare_input(first_images(raw, job["throughput_batch"]), job["input_spec"])
    samples = time_calls(lambda: predict(xb), **job["throughput_timing"])
    median = float(np.median(samples))
    return {"batch_size": len(xb), "threads": threads, "p50_ms": median,
            "images_per_s": len(xb) / (median / 1e3), "n": int(samples.size)}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one row: load (memory first), predictions, latency per setting, the paired
    speed-up when asked for, then throughput. The order keeps untimed work on every core away
    from the timed calls."""
    raw = np.load(job["images"], mmap_mode="r", allow_pickle=False)
    result: dict[str, Any] = {"phase_seconds": {}}
    clock = _PhaseClock(result["phase_seconds"])
    loaded = _load_and_first_inference(job, raw, result)
    clock.done("load")
    _predict_evaluation_sets(job, raw, loaded, result)
    clock.done("predictions")
    result["latency"] = _time_latency(job, raw, loaded)
    clock.done("latency")
    if job.get("paired"):
        _time_paired(job, raw, loaded, result)
        clock.done("paired")
    result["throughput"] = _time_throughput(job, raw, loaded)
    clock.done("throughput")
    return result


def die_with_parent() -> None:
    """Ask Linux to kill this worker when the run process dies (kill -9 included), so an orphan
    never writes into a run folder that a resumed run is using."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass  # not Linux: the worker just finishes its row


def main(argv: list[str]) -> int:
    die_with_parent()
    job = json.loads(Path(argv[0]).read_text())
    result = run_job(job)
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
