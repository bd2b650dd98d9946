"""Paired latency of two artifacts of one run, timed interleaved in one process.

Why: a run measures every row in its own worker, minutes apart. On a shared machine the speed
of the CPU drifts over minutes (neighbours, frequency), so the ratio of two rows' medians carries
that drift. Here both artifacts are loaded side by side and timed in alternating short blocks
(A B, B A, ...); each round gives one ratio of block medians, and the median of those ratios
cancels drift slower than a round. `edgebench ab` (bench/cli_ab.py) prints it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench.errors import ModelFileError, UserError, exception_line, first_line
from bench.results import artifact_path, row_name
from bench.worker import time_calls


@dataclass(frozen=True)
class PairedLatency:
    a_p50_ms: float
    b_p50_ms: float
    ratio_median: float          # median over rounds of (A block median / B block median): > 1 means B is faster
    ratio_p10_p90: tuple[float, float]
    rounds: int
    calls_per_block: int

    def to_dict(self) -> dict[str, Any]:
        return {"a_p50_ms": self.a_p50_ms, "b_p50_ms": self.b_p50_ms, "ratio_median": self.ratio_median,
                "ratio_p10_p90": list(self.ratio_p10_p90), "rounds": self.rounds, "calls_per_block": self.calls_per_block}


def _block_ms(fn: Callable[[], Any], calls: int) -> np.ndarray:
    """Exactly `calls` timed calls (ms), with the workers' timer and no warm-up or time minimum."""
    return time_calls(fn, warmup_calls=0, warmup_seconds=0.0, min_calls=calls, min_seconds=0.0, max_seconds=0.0)


def paired_latency(call_a: Callable[[], Any], call_b: Callable[[], Any], *, rounds: int = 40,
                   calls_per_block: int = 100, warmup_calls: int = 200, max_seconds: float = 0.0) -> PairedLatency:
    """Time two callables in alternating blocks; see the module docstring for why.

    `max_seconds` (0 = no cap) stops after the round that passes it, but never before 2 rounds;
    the result's `rounds` says how many were timed.
    """
    if rounds < 2 or calls_per_block < 1:
        raise UserError("ab: need at least 2 rounds and 1 call per block")
    _block_ms(call_a, warmup_calls)
    _block_ms(call_b, warmup_calls)
    ratios, all_a, all_b = [], [], []
    start = time.perf_counter()
    for r in range(rounds):
        if max_seconds and r >= 2 and time.perf_counter() - start > max_seconds:
            break
        first_a = r % 2 == 0  # alternate the order so neither side always runs with a warmer cache
        if first_a:
            a, b = _block_ms(call_a, calls_per_block), _block_ms(call_b, calls_per_block)
        else:
            b, a = _block_ms(call_b, calls_per_block), _block_ms(call_a, calls_per_block)
        ratios.append(float(np.median(a) / np.median(b)))
        all_a.append(a)
        all_b.append(b)
    ratio = np.asarray(ratios)
    return PairedLatency(float(np.median(np.concatenate(all_a))), float(np.median(np.concatenate(all_b))),
                         float(np.median(ratio)), (float(np.percentile(ratio, 10)), float(np.percentile(ratio, 90))),
                         len(ratios), calls_per_block)


def find_row(document: dict[str, Any], key: str) -> dict[str, Any]:
    """A row by 'variant/format/precision/runtime' (e.g. baseline/onnx/fp32/onnxruntime); it must be ok."""
    matches = [r for r in document.get("rows", []) if row_name(r) == key and r.get("device", "cpu") == "cpu"]
    if not matches and len(key.split("/")) != 4:  # checked after matching: a skipped row's precision is "n/a"
        raise UserError(f"ab: row {key!r} must be written variant/format/precision/runtime, e.g. baseline/onnx/fp32/onnxruntime")
    if not matches:
        known = sorted({row_name(r) for r in document.get("rows", []) if r.get("status") == "ok"})
        raise UserError(f"ab: no row {key!r} in this run; ok rows: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}")
    row = matches[0]
    if row.get("status") != "ok" or not row.get("artifact"):
        raise UserError(f"ab: row {key!r} has status {row.get('status')!r}, nothing to time")
    return row


def row_predictor(run_dir: Path, row: dict[str, Any], threads: int, batch_size: int) -> Callable[[], Any]:
    """Check the row's artifact in Python, load it on its runtime, and return a zero-argument call."""
    from bench.artifacts import describe_artifact
    from bench.inputs import prepare_input
    from bench.resume import artifact_changed
    from bench.runtimes import load, without_xnnpack_notice

    path = artifact_path(run_dir, row)
    describe_artifact(path, row["format"])  # raises a UserError on a bad file before any native loader sees it
    if artifact_changed(row, path):  # its timings would be labelled with a row that measured another file
        raise ModelFileError(f"ab: {row_name(row)}: {path} is not the file the run measured (its sha256 changed); "
                             "restore it, or measure it again in a new run")
    spec = row["input_spec"]
    shape = [d for d in spec["shape"] if d != "N"]
    channels, height, width = (shape[2], shape[0], shape[1]) if spec["layout"] == "NHWC" else shape
    raw = np.random.default_rng(0).integers(0, 256, size=(batch_size, channels, height, width), dtype=np.uint8)
    x = prepare_input(raw, spec)
    if row["runtime"] == "torch":
        import torch.export  # noqa: F401 - torch installs its log handlers on import; the capture below swaps them out
    logged = _TorchLogCapture()
    try:  # an artifact can pass the byte checks and still not load or run (a damaged weight, another input shape)
        with without_xnnpack_notice(), logged:
            predict = load(row["runtime"], path, threads, "cpu")
            predict(x)
    except Exception as exc:  # noqa: BLE001 - the runtime's own error, named on one line
        raise ModelFileError(f"ab: {row_name(row)}: {path.name} cannot be loaded or run on {row['runtime']} "
                             f"with the run's input ({spec['layout']} {spec['shape']}): {logged.cause() or first_line(exc)}") from None
    return lambda: predict(x)


class _TorchLogCapture:
    """Hold back torch's log records while a .pt2 loads. A damaged archive makes torch.export log the
    real cause (a warning with its traceback) and then raise "check the warnings above"; the one-line
    error names that cause instead (`cause`)."""

    def __init__(self) -> None:
        import logging

        self._records: list[logging.LogRecord] = []
        self._handler = logging.Handler()
        self._handler.emit = self._records.append  # type: ignore[method-assign]
        # torch hangs a stderr handler on "torch" and on some of its children ("torch.export"): all swapped out
        self._loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
                         if name == "torch" or name.startswith("torch.")]

    def __enter__(self) -> None:
        self._saved = [(logger.handlers[:], logger.propagate) for logger in self._loggers]
        for logger in self._loggers:
            logger.handlers[:] = [self._handler] if logger.handlers else []

    def __exit__(self, *exc: object) -> None:
        for logger, (handlers, propagate) in zip(self._loggers, self._saved):
            logger.handlers[:], logger.propagate = handlers, propagate

    def cause(self) -> str | None:
        """The first line of the last exception torch logged, if any."""
        for record in reversed(self._records):
            if record.exc_info and record.exc_info[1] is not None:
                return exception_line(record.exc_info[1])
        return None
