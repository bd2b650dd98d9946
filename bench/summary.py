"""The terminal summary table printed at the end of a run (one line per row)."""

from __future__ import annotations

from typing import Any

from bench.results import batch1_latency, runtime_label
from bench.stats import DISTURBED_P90_OVER_P10, paired_disturbed


def _fmt_size(n: int | None) -> str:
    if not isinstance(n, (int, float)) or not n:
        return "-"
    return f"{n / 1024:.0f} KB" if n < 2**20 else f"{n / 2**20:.1f} MB"


def _paired(paired: dict[str, Any] | None) -> str:
    """Speed-up vs the baseline on the same runtime, timed interleaved (see bench.abtest); * = disturbed."""
    speedup = paired.get("speedup") if isinstance(paired, dict) else None
    if not isinstance(speedup, (int, float)):
        return "-"
    return f"{speedup:.2f}x{'*' if paired_disturbed(paired) else ''}"


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def summary_lines(document: dict[str, Any]) -> list[str]:
    header = ("variant", "format", "precision", "runtime", "status", "size", "top-1", "p50 b1 ms", "img/s", "paired ×rt")
    table = [header]
    for row in document["rows"]:
        acc, lat, tp = row.get("accuracy") or {}, batch1_latency(row) or {}, row.get("throughput") or {}
        ok = row["status"] == "ok"  # like the report: a row that did not pass shows no speed-up
        table.append((row["variant"], row["format"], row["precision"], runtime_label(row), row["status"], _fmt_size(row.get("size_bytes")),
                      _fmt(acc.get("top1"), ".4f"), _fmt(lat.get("p50"), ".3f"), _fmt(tp.get("images_per_s"), ".0f"),
                      _paired(row.get("speedup_paired")) if ok else "-"))
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r["status"] == "ok" and paired_disturbed(r.get("speedup_paired")) for r in document["rows"]):
        lines.append(f"  * the machine was busy while this pair was timed (the p90 of its rounds' ratios over "
                     f"{DISTURBED_P90_OVER_P10 - 1:.0%} above the p10, even in the steadiest timing kept): "
                     "re-time it with `edgebench ab RUN_DIR ROW_A ROW_B`")
    failed = [r for r in document["rows"] if r["status"] != "ok"]
    for row in failed:
        lines.append(f"  {row['status']}: {row['variant']} {row['format']}/{row['precision']} on {runtime_label(row)}: {row.get('reason')}")
    return lines


def print_summary(document: dict[str, Any]) -> None:
    print("\n" + "\n".join(summary_lines(document)))
