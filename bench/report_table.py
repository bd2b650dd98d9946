"""The summary table of a run: one line per row, with ratios against the baseline rows.

Shared by report.html and report.md, so both show the same numbers. Every optional block of a
row (accuracy, latency, throughput, explanation, ...) may be missing or null; a missing value
renders as "-" and never stops the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any, Callable

from bench.results import batch1_latency, runtime_label
from bench.stats import paired_range

# The status legend: label and a short symbol (so the status reads without colour too).
STATUS_LABELS = {
    "ok": ("ok", "✓"),
    "export_failed": ("export failed", "✗E"),
    "validation_failed": ("validation failed", "✗V"),
    "run_failed": ("run failed", "✗R"),
    "skipped": ("skipped", "–"),
}


@dataclass
class Line:
    """One row of results.json with its headline numbers and comparisons resolved."""

    row: dict[str, Any]
    top1: float | None
    ci: tuple[float, float] | None
    f1: float | None
    p50: float | None
    p99: float | None
    ips: float | None
    agreement: float | None
    delta_top1_pt: float | None  # vs the reference baseline row
    speedup_rt: float | None  # baseline p50 / this p50, same runtime and device (>1: faster)
    size_ratio_rt: float | None  # this size / baseline size, same runtime and device (<1: smaller)
    speedup_ref: float | None  # the same against the reference baseline row
    size_ratio_ref: float | None
    paired: dict[str, Any] | None = None  # row.speedup_paired: timed interleaved with its runtime's baseline
    is_reference: bool = False
    is_baseline_variant: bool = False

    @property
    def status(self) -> str:
        return str(self.row.get("status", "?"))

    @property
    def label(self) -> str:
        r = self.row
        return f"{r['variant']} {r['format']}/{r['precision']} {runtime_label(r)}"


def reference_row(document: dict[str, Any]) -> dict[str, Any] | None:
    """The accuracy/speed reference: the baseline variant's torch fp32 CPU row, else its first ok row."""
    name = document.get("baseline", "baseline")
    ok = [r for r in document.get("rows") or [] if r.get("variant") == name and r.get("status") == "ok"]
    for row in ok:
        if (row.get("format"), row.get("precision"), row.get("device", "cpu")) == ("torch", "fp32", "cpu"):
            return row
    return ok[0] if ok else None


def runtime_baseline(document: dict[str, Any], row: dict[str, Any]) -> dict[str, Any] | None:
    """The baseline variant's ok fp32 row on the same runtime and device (the same format first), or
    None: when that row failed, ratios are left blank rather than quietly taken against fp16 or int8."""
    name = document.get("baseline", "baseline")
    same = [r for r in document.get("rows") or [] if r.get("variant") == name and r.get("status") == "ok"
            and r.get("precision") == "fp32"
            and r.get("runtime") == row.get("runtime") and r.get("device", "cpu") == row.get("device", "cpu")]
    same.sort(key=lambda r: r.get("format") != row.get("format"))
    return same[0] if same else None


def _num(block: dict[str, Any] | None, key: str) -> float | None:
    value = (block or {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num is not None and den else None


def summary_lines(document: dict[str, Any]) -> list[Line]:
    """One Line per row of the document, in the document's order."""
    ref = reference_row(document)
    ref_top1 = _num((ref or {}).get("accuracy"), "top1")
    ref_p50 = _num(batch1_latency(ref) if ref else None, "p50")
    lines = []
    for row in document.get("rows") or []:
        acc, lat = row.get("accuracy") or {}, batch1_latency(row) or {}
        ci = acc.get("top1_ci95")
        top1, p50, size = _num(acc, "top1"), _num(lat, "p50"), _num(row, "size_bytes")
        rt = runtime_baseline(document, row)
        rt_p50 = _num(batch1_latency(rt) if rt else None, "p50")
        ok = row.get("status") == "ok"
        lines.append(Line(
            row=row, top1=top1, ci=(float(ci[0]), float(ci[1])) if ci and len(ci) == 2 else None,
            f1=_num(acc, "f1_macro"), p50=p50, p99=_num(lat, "p99"), ips=_num(row.get("throughput"), "images_per_s"),
            agreement=_num(acc, "agreement_with_baseline"),
            delta_top1_pt=(top1 - ref_top1) * 100 if top1 is not None and ref_top1 is not None else None,
            speedup_rt=_ratio(rt_p50, p50) if ok else None,
            size_ratio_rt=_ratio(size, _num(rt, "size_bytes")) if size else None,
            speedup_ref=_ratio(ref_p50, p50) if ok else None,
            size_ratio_ref=_ratio(size, _num(ref, "size_bytes")) if size else None,
            paired=row.get("speedup_paired") if ok and isinstance(row.get("speedup_paired"), dict) else None,
            is_reference=row is ref, is_baseline_variant=row.get("variant") == document.get("baseline", "baseline")))
    return lines


def drift_text(line: Line) -> str:
    """Attribution drift against the baseline's explanations: Spearman rho, top-10% IoU, a flag."""
    row = line.row
    explanation = row.get("explanation") or {}
    drift = explanation.get("drift")
    if not explanation:
        return "-"
    if explanation.get("status", "ok") != "ok":  # blocks without a status predate it (ok)
        return str(explanation["status"])  # why: listed under "Explanations that failed"
    if not drift:
        return "ref" if line.is_baseline_variant else "-"
    parts = []
    if isinstance(drift.get("spearman_mean"), (int, float)):
        parts.append(f"ρ {drift['spearman_mean']:.2f}")
    if isinstance(drift.get("iou_top10_mean"), (int, float)):
        parts.append(f"IoU {drift['iou_top10_mean']:.2f}")
    if drift.get("drifted"):
        parts.append("DRIFTED")
    if parts and explanation.get("shared_from"):
        parts.append("(shared)")  # this fp32 row reuses another fp32 row's explanation (within parity)
    return " ".join(parts) or "-"


def fmt_size(n: int | None) -> str:
    if not isinstance(n, (int, float)) or not n:
        return "-"
    return f"{n / 1024:.1f} KB" if n < 2**20 else f"{n / 2**20:.2f} MB"


def fmt_count(n: int | None) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def _f(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def _top1(line: Line) -> str:
    if line.top1 is None:
        return "-"
    ci = f" [{line.ci[0] * 100:.1f}, {line.ci[1] * 100:.1f}]" if line.ci else ""
    return f"{line.top1 * 100:.2f}{ci}"


def fmt_times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}×"


def paired_text(line: Line) -> str:
    """'2.67× [2.11-3.44]': the paired speed-up with the 10-90% range of its rounds."""
    speedup, spread = (line.paired or {}).get("speedup"), paired_range(line.paired)
    if not isinstance(speedup, (int, float)):
        return "-"
    if spread is None:
        return f"{speedup:.2f}×"
    return f"{speedup:.2f}× [{spread[0]:.2f}-{spread[1]:.2f}]"


def _delta(line: Line) -> str:
    if line.is_reference:
        return "ref"
    return "-" if line.delta_top1_pt is None else f"{line.delta_top1_pt:+.2f}"


# (header, what it means, cell text). The status column is rendered by each format itself.
Column = tuple[str, str, Callable[[Line], str]]
COLUMNS: list[Column] = [
    ("variant", "compressed model name (its passes on hover in report.html, and under What each pass did)",
     lambda l: str(l.row.get("variant"))),
    ("format", "exported artifact format", lambda l: str(l.row.get("format"))),
    ("precision", "numeric mode of the artifact", lambda l: str(l.row.get("precision"))),
    ("runtime", "engine that ran the artifact (and device when not the CPU)",
     lambda l: runtime_label(l.row)),
    ("size", "artifact file size", lambda l: fmt_size(l.row.get("size_bytes"))),
    ("size ×rt", "size / size of the baseline's fp32 row on the same runtime (<1: smaller)", lambda l: fmt_times(l.size_ratio_rt)),
    ("size ×ref", "size / size of the reference row (the baseline's torch fp32 row)", lambda l: fmt_times(l.size_ratio_ref)),
    ("params", "parameters of the model", lambda l: fmt_count(l.row.get("params"))),
    ("MACs", "multiply-accumulates per image", lambda l: fmt_count(l.row.get("macs"))),
    ("top-1 % [95% CI]", "test accuracy with its Wilson 95% interval", _top1),
    ("Δtop-1 pt", "top-1 minus the reference baseline's, percentage points", _delta),
    ("F1", "macro F1 over the classes", lambda l: _f(l.f1, ".3f")),
    ("p50 ms", "median latency at batch 1 (fewest threads measured)", lambda l: _f(l.p50, ".3f")),
    ("p99 ms", "99th-percentile latency at batch 1", lambda l: _f(l.p99, ".3f")),
    ("img/s", "throughput at [benchmark] throughput_batch (32 by default; each row's throughput.batch_size in "
     "results.json) and the fewest threads measured", lambda l: _f(l.ips, ".0f")),
    ("speed-up ×rt", "the baseline's fp32 p50 / this p50 on the same runtime and device (>1: faster); the two rows were "
     "timed minutes apart, so the ratio carries the machine's drift between them: where paired ×rt has a value, read that",
     lambda l: fmt_times(l.speedup_rt)),
    ("speed-up ×ref", "the reference row's p50 / this p50 (the baseline's torch fp32 row, whose per-call Python overhead "
     "dominates at small sizes)", lambda l: fmt_times(l.speedup_ref)),
    ("paired ×rt [p10-p90]", "the speed-up to read: against the baseline's fp32 row on the same runtime, both timed in one "
     "process in alternating blocks: median of the rounds' ratios and their 10-90% range; free of the drift between rows measured minutes apart. "
     "A pair timed while the machine was busy (p90 more than 15% above p10) is timed again, up to 3 times, and the steadiest "
     "timing kept (every timing: speedup_paired.attempts in results.json)",
     paired_text),
    ("agree", "share of test images with the same top-1 as the baseline", lambda l: _f(l.agreement, ".3f")),
]
DRIFT_COLUMN: Column = ("drift", "attribution drift vs the baseline's explanation (its ONNX Runtime fp32 row where there is "
                        "one): mean Spearman ρ of the SHAP values and IoU of their top 10% pixels; DRIFTED when ρ is below "
                        "[explain] drift_threshold; (shared): an fp32 row that reuses its variant's fp32 explanation, "
                        "having matched it within the parity tolerance", drift_text)


def columns_for(lines: list[Line]) -> list[Column]:
    """The table's columns; the drift column only when some row has an explanation."""
    has_drift = any((line.row.get("explanation") or {}).get("drift") for line in lines)
    return COLUMNS + ([DRIFT_COLUMN] if has_drift else [])


def reasons(lines: list[Line]) -> list[tuple[Line, str]]:
    """(line, reason) of every row that is not ok, in table order."""
    return [(line, str(line.row.get("reason") or "no reason recorded")) for line in lines if line.status != "ok"]


def explanation_failures(lines: list[Line]) -> list[tuple[Line, str]]:
    """(line, reason) of every ok row whose explanation failed, in table order."""
    out = []
    for line in lines:
        block = line.row.get("explanation") or {}
        if line.status == "ok" and block and block.get("status", "ok") != "ok":
            out.append((line, str(block.get("reason") or "no reason recorded")))
    return out


def md_cell(text: str) -> str:
    """Text for one GitHub Markdown table cell: | and \\ escaped, line breaks as spaces."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(lines: list[Line]) -> list[str]:
    """The summary table as GitHub Markdown lines (| in cells escaped)."""
    columns = columns_for(lines)

    out = ["| status | " + " | ".join(h for h, _, _ in columns) + " |",
           "|---|" + "|".join("---" if h in ("variant", "format", "precision", "runtime") else "--:" for h, _, _ in columns) + "|"]
    for line in lines:
        label, symbol = STATUS_LABELS.get(line.status, (line.status, "?"))
        out.append(f"| {symbol} {md_cell(label)} | " + " | ".join(md_cell(fn(line)) for _, _, fn in columns) + " |")
    return out


def markdown_section(title: str, intro: str, headings: list[str], cells: list[list[str]]) -> list[str]:
    """A titled report section holding one table (first column text, the rest numbers) as Markdown lines."""
    return ([f"## {title}", "", intro, "", "| " + " | ".join(md_cell(h) for h in headings) + " |",
             "|---|" + "--:|" * (len(headings) - 1)] + ["| " + " | ".join(md_cell(c) for c in line) + " |" for line in cells] + [""])


def html_section(title: str, intro: str, headings: list[str], cells: list[list[str]]) -> str:
    """The same section as HTML (the first column left-aligned, as the summary table's text columns)."""
    head = "".join(f'<th{" class=t" if i == 0 else ""}>{escape(h)}</th>' for i, h in enumerate(headings))
    body = "".join("<tr>" + "".join(f'<td{" class=t" if i == 0 else ""}>{escape(c)}</td>' for i, c in enumerate(line))
                   + "</tr>" for line in cells)
    return (f"<h2>{escape(title)}</h2><p>{escape(intro)}</p>"
            f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
