"""bench.report_deploy: the report's memory, start-up, robustness and calibration section."""

from __future__ import annotations

from typing import Any

from bench.report_deploy import deploy_table, html_section, markdown_section


def _row(variant: str, status: str = "ok", **fields: Any) -> dict[str, Any]:
    return {"variant": variant, "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "status": status, **fields}


def test_each_ok_row_shows_its_memory_start_up_robustness_and_calibration() -> None:
    robust = {"mean_corruption_top1": 0.648, "adversarial_transfer_top1": {"fgsm-eps0.1": 0.12, "pgd-eps0.1": 0.0}}
    document = {"baseline": "baseline", "rows": [
        _row("baseline", memory={"peak_rss_mb": 70.2}, load_ms=31.04, first_inference_ms=0.771, robustness=robust,
             calibration={"ece": 0.0938}),
        _row("small|net", memory={"peak_rss_mb": 64.0}, load_ms=27.3, robustness={
            **robust, "mean_corruption_top1_relative_to_baseline": 1.0796, "adversarial_transfer_top1": {"fgsm-eps0.1": 0.259}}),
        _row("broken", status="run_failed", memory={"peak_rss_mb": 1.0})]}
    headings, cells = deploy_table(document)
    assert headings == ["row", "peak RSS MB", "load ms", "first call ms", "corrupted top-1 %", "×base",
                        "fgsm-eps0.1 top-1 %", "pgd-eps0.1 top-1 %", "ECE"]
    assert cells == [["baseline onnx/fp32 onnxruntime", "70", "31.0", "0.77", "64.8", "ref", "12.0", "0.0", "0.094"],
                     ["small|net onnx/fp32 onnxruntime", "64", "27.3", "-", "64.8", "1.08×", "25.9", "-", "-"]]  # failed rows: none
    markdown = "\n".join(markdown_section(document))
    assert "| small\\|net onnx/fp32 onnxruntime | 64 |" in markdown  # a | in a name cannot break the table
    assert "<td class=t>small|net onnx/fp32 onnxruntime</td>" in html_section(document)


def test_a_run_without_these_measurements_has_no_section() -> None:
    document = {"rows": [_row("baseline"), _row("broken", status="export_failed")]}
    assert deploy_table(document) is None and markdown_section(document) == [] and html_section(document) == ""
