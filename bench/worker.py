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
from bench.results import save_array
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


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    spec, runtime, device = job["input_spec"], job["runtime"], job["device"]
    settings, timing = job["settings"], job["timing"]
    raw = np.load(job["images"], mmap_mode="r", allow_pickle=False)
    result: dict[str, Any] = {"rss_before_load_mb": round(_rss_mb(), 1)}
    phases = result["phase_seconds"] = {}  # where the worker's time went, for the run log
    phase_start = time.perf_counter()

    def phase_done(name: str) -> None:
        nonlocal phase_start
        now = time.perf_counter()
        phases[name] = round(now - phase_start, 2)
        phase_start = now

    # 1. load + first inference at the first setting, and the memory high-water mark
    first = settings[0]
    t0 = time.perf_counter()
    predict = load(runtime, job["artifact"], first["threads"], device)
    result["load_ms"] = (time.perf_counter() - t0) * 1e3
    one = prepare_input(np.array(raw[:1]), spec)
    t0 = time.perf_counter()
    predict(one)
    result["first_inference_ms"] = (time.perf_counter() - t0) * 1e3
    predict(prepare_input(first_images(raw, job["throughput_batch"]), spec))
    result["memory"] = {"peak_rss_mb": round(_peak_rss_mb(), 1),
                        "rss_before_load_mb": result.pop("rss_before_load_mb"),
                        "measured": f"high-water mark after load and inference at batch 1 and {job['throughput_batch']}"}
    phase_done("load")

    # 2. predictions on the evaluation images (full test set unless limited). Nothing here is
    # timed, so a second copy of the artifact runs them on every core (eval_threads); it is
    # released before the timings, so its threads cannot compete with the timed calls.
    evaluate = predict if job["eval_threads"] == first["threads"] else load(runtime, job["artifact"], job["eval_threads"], device)
    logits, bad_inputs = [], 0
    for start in range(0, len(raw), job["eval_batch"]):
        x = prepare_input(np.array(raw[start:start + job["eval_batch"]]), spec)
        if np.issubdtype(x.dtype, np.floating):  # e.g. a std of 0 in a hand-written input_spec
            bad_inputs += int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        logits.append(evaluate(x))
    all_logits = np.concatenate(logits).astype(np.float32)
    save_array(job["logits_out"], all_logits)
    result["nonfinite_inputs"] = bad_inputs
    result["nonfinite_outputs"] = int((~np.isfinite(all_logits)).any(axis=1).sum())

    # 2b. predictions on the robustness sets (corrupted and adversarial copies), when asked for
    if job.get("extra_images"):
        extra = np.load(job["extra_images"], mmap_mode="r", allow_pickle=False)
        out = [evaluate(prepare_input(np.array(extra[i:i + job["eval_batch"]]), spec)) for i in range(0, len(extra), job["eval_batch"])]
        save_array(job["extra_logits_out"], np.concatenate(out).astype(np.float32))
    del evaluate
    result["eval_threads"] = job["eval_threads"]
    phase_done("predictions")

    # 3. latency per (batch size, threads) setting, raw samples saved beside the results
    loaded = {"threads": first["threads"], "predict": predict}

    def predictor(threads: int) -> Callable[[np.ndarray], Any]:
        """The artifact loaded with `threads` (reloaded only when the thread count changes)."""
        if loaded["threads"] != threads:
            loaded.update(threads=threads, predict=load(runtime, job["artifact"], threads, device))
        return loaded["predict"]

    result["latency"] = []
    for setting in settings:
        predict = predictor(setting["threads"])
        x = prepare_input(first_images(raw, setting["batch_size"]), spec)
        made: dict[str, Any] = {}
        samples = time_calls(lambda: predict(x), **timing, record=made)
        save_array(setting["samples_out"], samples)
        result["latency"].append({**setting, "samples": setting["samples_out"], "stats": latency_stats(samples),
                                  "warmup": made["warmup"]})
    phase_done("latency")

    # 3b. speed-up against the baseline's row on this runtime, timed interleaved, at the headline
    # setting (the smallest batch at the fewest threads: what the report's speed-up columns use)
    if job.get("paired"):
        headline = min(settings, key=lambda s: (s["batch_size"], s["threads"]))
        try:
            result["paired"] = _paired_speedup(job, predictor(headline["threads"]), raw, headline, timing["max_seconds"])
        except Exception as exc:  # noqa: BLE001 - the row's own measurements stand; a note says why
            result["paired_error"] = exception_line(exc, 200)
        phase_done("paired")

    # 4. throughput at a larger batch (threads of the first setting)
    predict = predictor(first["threads"])
    xb = prepare_input(first_images(raw, job["throughput_batch"]), spec)
    samples = time_calls(lambda: predict(xb), **job["throughput_timing"])
    median = float(np.median(samples))
    result["throughput"] = {"batch_size": len(xb), "threads": first["threads"], "p50_ms": median,
                            "images_per_s": len(xb) / (median / 1e3), "n": int(samples.size)}
    phase_done("throughput")
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
