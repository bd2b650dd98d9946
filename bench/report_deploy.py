"""The report's "Memory, start-up, robustness and calibration" section: what each ok row costs to
load and hold, and how it holds up away from the clean test images. The summary table leaves these
measurements out for width; a deployer choosing between variants needs them side by side too.
"""

from __future__ import annotations

from typing import Any

from bench import report_table
from bench.results import runtime_label

TITLE = "Memory, start-up, robustness and calibration"
INTRO = ("Peak RSS: the measuring process's high-water mark after loading the artifact and running it at batch 1 "
         "and at the throughput batch (the runtime's own memory included). Load and first call: wall time of "
         "loading the artifact and of its first inference. Corrupted: mean top-1 over the run's corrupted test "
         "images (robustness_sets in results.json lists them), and that mean against the baseline's (×base, >1: "
         "holds up better). Adversarial: top-1 on images crafted against the fp32 torch baseline (a transfer "
         "attack for every other artifact). ECE: expected calibration error of the softmax confidence (lower: "
         "better calibrated).")


def _number(value: Any, fmt: str, scale: float = 1.0) -> str:
    return format(value * scale, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _relative(value: Any, robustness: dict[str, Any], is_baseline: bool) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.2f}×"
    return "ref" if robustness and is_baseline else "-"  # the baseline row the others are divided by


def deploy_table(document: dict[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    """(headings, cells) of the section, or None when no ok row has any of these measurements."""
    rows = [r for r in document.get("rows") or [] if r.get("status") == "ok"]
    attacks = list(dict.fromkeys(k for r in rows for k in ((r.get("robustness") or {}).get("adversarial_transfer_top1") or {})))
    if not any(r.get("memory") or r.get("load_ms") is not None or r.get("robustness") or r.get("calibration") for r in rows):
        return None
    headings = (["row", "peak RSS MB", "load ms", "first call ms", "corrupted top-1 %", "×base"]
                + [f"{attack} top-1 %" for attack in attacks] + ["ECE"])
    cells = []
    for row in rows:
        robustness = row.get("robustness") or {}
        adversarial = robustness.get("adversarial_transfer_top1") or {}
        relative = robustness.get("mean_corruption_top1_relative_to_baseline")
        cells.append([f"{row.get('variant')} {row.get('format')}/{row.get('precision')} {runtime_label(row)}",
                      _number((row.get("memory") or {}).get("peak_rss_mb"), ".0f"),
                      _number(row.get("load_ms"), ".1f"), _number(row.get("first_inference_ms"), ".2f"),
                      _number(robustness.get("mean_corruption_top1"), ".1f", 100),
                      _relative(relative, robustness, row.get("variant") == document.get("baseline", "baseline")),
                      *[_number(adversarial.get(attack), ".1f", 100) for attack in attacks],
                      _number((row.get("calibration") or {}).get("ece"), ".3f")])
    return headings, cells


def markdown_section(document: dict[str, Any]) -> list[str]:
    table = deploy_table(document)
    return [] if table is None else report_table.markdown_section(TITLE, INTRO, *table)


def html_section(document: dict[str, Any]) -> str:
    table = deploy_table(document)
    return "" if table is None else report_table.html_section(TITLE, INTRO, *table)
