"""Compare two runs row by row, and decide which changes are real and which cross a threshold.

Rows match on (variant, format, precision, runtime, device); latencies on batch size and thread
count too. Latency changes are tested on the raw batch-1 samples: a seeded bootstrap 95% interval of the ratio of medians (B / A); a change
is significant when the interval excludes 1. Accuracy and size changes need no noise test here:
a threshold crossing is enough (see THRESHOLD_HELP, which the CLI prints in --help).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.environment import environment_differences
from bench.errors import UserError
from bench.results import batch1_latency, read_latency_samples, read_run_document, row_key
from bench.stats import bootstrap_ratio

# metric -> (unit the threshold must use, what it measures)
METRICS = {
    "p50": ("%", "median batch-1 latency, ratio B/A as a % change"),
    "p99": ("%", "99th-percentile batch-1 latency, ratio B/A as a % change"),
    "top1": ("pt", "top-1 accuracy, B - A in percentage points"),
    "f1": ("pt", "macro F1, B - A in points (x100)"),
    "size": ("%", "artifact size in bytes, B/A as a % change"),
}
QUANTILES = {"p50": 0.5, "p99": 0.99}
MIN_SAMPLES = 10  # raw latency samples a row needs before its change is tested against noise
PRACTICAL_CHANGE = 0.02  # a latency change smaller than this is reported as "same" even when significant
# "more than the limit": a change at the limit passes, also when floating point puts it a hair
# above (50 of 10,000 images is 0.5000000000000004 pt)
CHANGE_TOLERANCE = 1e-9
_EXPR = re.compile(r"^(?P<metric>[a-z0-9_]+):(?P<sign>[+-])(?P<value>\d+(?:\.\d+)?)(?P<unit>%|pt)$")

THRESHOLD_HELP = """\
--fail-on EXPR: METRIC:SIGNVALUEUNIT, e.g. p50:+10% (fail when latency rises by more than 10%),
top1:-0.5pt (fail when top-1 drops by more than 0.5 points), size:+5%. Metrics: p50, p99 (%),
top1, f1 (pt), size (%). The sign is the direction that fails.
Decision rule: a latency threshold fails a row only when the change crosses it AND is
significant: the bootstrap 95% CI of the ratio of quantiles B/A (from the raw samples,
seeded, --resamples draws) lies wholly on the failing side of 1. That CI covers the noise of
the calls within each run, not the drift of a shared machine between runs (a percent or two):
the verdict column says "same" for significant changes under 2%; keep thresholds above drift. When a run has no raw samples
the stats in results.json are compared and crossing alone fails (said in the output).
Accuracy and size: crossing the threshold alone fails (both runs see the same test set, so
the per-run 95% CIs overlap even for real drops; keep accuracy thresholds above the noise
you accept). Exit 1 when any threshold fails (with --strict also when a row ok in A is
missing or not ok in B, or a gated metric was not compared: B stopped measuring it, or the
runs lack a batch-1 timing at A's thread count), else 0; 2 on bad input."""


@dataclass(frozen=True)
class Threshold:
    """A parsed --fail-on expression: fail when direction * change > limit."""

    text: str
    metric: str
    direction: int  # +1: an increase fails, -1: a decrease fails
    limit: float
    unit: str


def parse_threshold(expr: str) -> Threshold:
    """Parse 'p50:+10%' style expressions; UserError naming the expression when malformed.

    >>> parse_threshold("top1:-0.5pt").direction
    -1
    """
    match = _EXPR.match(expr.strip().lower())
    if not match:
        raise UserError(f"bad --fail-on expression {expr!r}: expected METRIC:SIGNVALUEUNIT such as p50:+10% or top1:-0.5pt")
    metric, unit = match["metric"], match["unit"]
    if metric not in METRICS:
        raise UserError(f"bad --fail-on expression {expr!r}: unknown metric {metric!r} (one of {', '.join(METRICS)})")
    if unit != METRICS[metric][0]:
        raise UserError(f"bad --fail-on expression {expr!r}: {metric} thresholds are in {METRICS[metric][0]}, not {unit}")
    return Threshold(expr, metric, 1 if match["sign"] == "+" else -1, float(match["value"]), unit)


@dataclass
class LatencyChange:
    """Batch-1 latency of one matched row in A and B, and whether the change is beyond noise."""

    a_ms: float
    b_ms: float
    ratio: float
    ci: tuple[float, float] | None = None  # None: no raw samples, stats compared as they are

    @property
    def verdict(self) -> str:
        """slower / faster only when the CI excludes 1 AND the change is at least PRACTICAL_CHANGE: the
        bootstrap sees the noise of the calls within each run, not the drift of a shared machine between
        runs, which moves every row by a percent or two (two runs of one config: 52 of 58 rows 'changed')."""
        if self.ci is None:
            return "no samples"  # stats compared as recorded; noise not tested
        if self.ci[0] <= 1 <= self.ci[1]:
            return "noise"
        if abs(self.ratio - 1) < PRACTICAL_CHANGE:
            return "same"
        return "slower" if self.ci[0] > 1 else "faster"


@dataclass
class Pair:
    """One row key and its rows in A and B (either may be None)."""

    key: tuple[str, ...]
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    latency: dict[str, LatencyChange] = field(default_factory=dict)

    @property
    def label(self) -> str:
        variant, fmt, precision, runtime, device = self.key
        return f"{variant} {fmt}/{precision} {runtime}" + ("" if device == "cpu" else f"/{device}")

    @property
    def kind(self) -> str:
        if self.a is None:
            return "only in B"
        if self.b is None:
            return "only in A"
        return "matched" if self.a.get("status") == self.b.get("status") else "status changed"

    def value(self, metric: str) -> tuple[float, float] | None:
        """(A, B) of a non-latency metric when both rows have it."""
        if self.a is None or self.b is None:
            return None
        va, vb = metric_value(self.a, metric), metric_value(self.b, metric)
        return (va, vb) if va is not None and vb is not None else None

    def change(self, metric: str) -> float | None:
        """Signed change in the threshold's unit: % for latency and size, points for accuracy."""
        if metric in QUANTILES:
            lat = self.latency.get(metric)
            return (lat.ratio - 1) * 100 if lat else None
        values = self.value(metric)
        if values is None:
            return None
        if metric == "size":
            return (values[1] / values[0] - 1) * 100 if values[0] else None
        return (values[1] - values[0]) * 100


@dataclass
class Failure:
    threshold: Threshold
    pair: Pair
    message: str


@dataclass
class Comparison:
    run_a: Path
    run_b: Path
    pairs: list[Pair]
    notes: list[str]
    failures: list[Failure]
    strict_problems: list[str]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures or self.strict_problems else 0


def metric_value(row: dict[str, Any], metric: str) -> float | None:
    """A row's value of a gated metric (a batch-1 latency quantile, top1, f1 or size), None when not measured."""
    if metric in QUANTILES:
        value = (batch1_latency(row) or {}).get(metric)
    else:
        block, field = {"top1": ("accuracy", "top1"), "f1": ("accuracy", "f1_macro"), "size": (None, "size_bytes")}[metric]
        value = ((row.get(block) or {}) if block else row).get(field)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _samples(run_dir: Path, entry: dict[str, Any]) -> np.ndarray | None:
    samples = read_latency_samples(run_dir, entry)  # None when unusable: fall back to the recorded stats
    # a bootstrap of a handful of calls gives a deceptively narrow interval: test noise only above that
    return samples if samples is not None and samples.size >= MIN_SAMPLES else None


def matching_latency(row: dict[str, Any], like: dict[str, Any] | None) -> dict[str, Any] | None:
    """The latency entry of `row` at the batch size and thread count of `like` (None when it has none):
    a 1-thread latency in A is only ever compared with a 1-thread latency in B."""
    if like is None:
        return None
    return next((e for e in row.get("latency") or []
                 if e.get("batch_size") == like.get("batch_size") and e.get("threads") == like.get("threads")), None)


def latency_change(pair: Pair, metric: str, dirs: tuple[Path, Path], resamples: int, seed: int) -> LatencyChange | None:
    """Compare a quantile of the batch-1 latency of both rows (bootstrap CI when both have samples)."""
    if pair.a is None or pair.b is None:
        return None
    entries = batch1_latency(pair.a), matching_latency(pair.b, batch1_latency(pair.a))
    if entries[0] is None or entries[1] is None or not entries[0].get(metric) or not entries[1].get(metric):
        return None
    samples = [_samples(d, e) for d, e in zip(dirs, entries)]
    if samples[0] is None or samples[1] is None:
        a_ms, b_ms = float(entries[0][metric]), float(entries[1][metric])
        return LatencyChange(a_ms, b_ms, b_ms / a_ms)
    ratio, low, high = bootstrap_ratio(samples[0], samples[1], QUANTILES[metric], resamples, seed)
    return LatencyChange(float(np.quantile(samples[0], QUANTILES[metric])), float(np.quantile(samples[1], QUANTILES[metric])),
                         ratio, (low, high))


def _check(pair: Pair, threshold: Threshold) -> Failure | None:
    # only rows ok in both runs are gated: a failed row's numbers are not a result (--strict reports B's failures)
    if not (pair.a and pair.b and pair.a.get("status") == pair.b.get("status") == "ok"):
        return None
    change = pair.change(threshold.metric)
    if change is None or threshold.direction * change <= threshold.limit + CHANGE_TOLERANCE:
        return None
    unit = "%" if threshold.unit == "%" else " pt"
    message = f"{threshold.metric} {change:+.2f}{unit}"
    lat = pair.latency.get(threshold.metric)
    if lat is not None:
        if lat.ci is None:
            message += " (no raw samples: stats compared, noise not tested)"
        else:
            failing_side = lat.ci[0] > 1 if threshold.direction > 0 else lat.ci[1] < 1
            if not failing_side:
                return None  # crosses the threshold but is within noise
            message += f" (ratio ×{lat.ratio:.3f}, 95% CI [{lat.ci[0]:.3f}, {lat.ci[1]:.3f}])"
    return Failure(threshold, pair, message)


def _latency_not_compared(pair: Pair) -> str | None:
    """Why a pair ok in both runs has no latency change (None when it has one, or is not ok in both):
    latency is compared at A's batch-1 setting with the fewest threads, and only with B's timing
    at that same setting."""
    if not (pair.a and pair.b and pair.a.get("status") == pair.b.get("status") == "ok") or pair.latency:
        return None
    headline = batch1_latency(pair.a)
    if headline is None:
        return "A has no batch-1 latency"
    if matching_latency(pair.b, headline) is None:
        return f"B has no batch-1 latency at {headline.get('threads')} thread(s), A's setting"
    return None


def compare_runs(run_a: Path, run_b: Path, thresholds: list[Threshold], *, strict: bool = False,
                 resamples: int = 2000, seed: int = 0) -> Comparison:
    """Match the rows of two runs, measure the changes and apply the thresholds."""
    doc_a, doc_b = read_run_document(run_a), read_run_document(run_b)
    rows_a = {row_key(r): r for r in doc_a["rows"]}
    rows_b = {row_key(r): r for r in doc_b["rows"]}
    keys = list(rows_a) + [k for k in rows_b if k not in rows_a]
    metrics = {"p50"} | {t.metric for t in thresholds if t.metric in QUANTILES}
    pairs, notes = [], environment_differences(doc_a, doc_b)
    for name, doc in (("A", doc_a), ("B", doc_b)):  # an interrupted run lacks rows: say so before any gate does
        if doc.get("status") not in (None, "complete"):
            notes.append(f"run {name} is {doc.get('status')!r}, not complete: it may lack rows (edgebench run --resume finishes it)")
    for key in keys:
        pair = Pair(key, rows_a.get(key), rows_b.get(key))
        for metric in sorted(metrics):
            change = latency_change(pair, metric, (Path(run_a), Path(run_b)), resamples, seed)
            if change is not None:
                pair.latency[metric] = change
        pairs.append(pair)
    uncompared = {p.label: reason for p in pairs if (reason := _latency_not_compared(p)) is not None}
    if uncompared:
        shown = "; ".join(f"{label}: {reason}" for label, reason in list(uncompared.items())[:3])
        notes.append(f"{len(uncompared)} row(s) ok in both runs have no latency compared ({shown}"
                     f"{' ...' if len(uncompared) > 3 else ''})")
    if any(lat.ci is None for p in pairs for lat in p.latency.values()):
        notes.append(f"some rows have no raw latency samples (or fewer than {MIN_SAMPLES}) in one run: their latency is "
                     "compared from the stats, without a noise test")
    failures = [f for p in pairs for t in thresholds if (f := _check(p, t)) is not None]
    problems = [f"{p.label}: ok in A, {'missing' if p.b is None else p.b.get('status')} in B" for p in pairs
                if strict and p.a is not None and p.a.get("status") == "ok" and (p.b is None or p.b.get("status") != "ok")]
    if strict:  # a gate must not pass because B stopped measuring what it gates
        gated = list(dict.fromkeys(t.metric for t in thresholds))
        problems += [f"{p.label}: {metric} measured in A, missing in B" for p in pairs
                     if p.a is not None and p.b is not None and p.a.get("status") == p.b.get("status") == "ok"
                     for metric in gated if metric not in QUANTILES
                     if metric_value(p.a, metric) is not None and metric_value(p.b, metric) is None]
        if gated_latency := [m for m in gated if m in QUANTILES]:  # compared only at A's batch-1 setting
            problems += [f"{label}: {', '.join(gated_latency)} not compared: {reason}" for label, reason in uncompared.items()]
    return Comparison(Path(run_a), Path(run_b), pairs, notes, failures, problems)
