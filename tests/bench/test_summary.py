"""The terminal summary printed at the end of a run."""

from __future__ import annotations

from bench.summary import summary_lines


def _row(variant: str, status: str = "ok", paired: dict | None = None) -> dict:
    return {"variant": variant, "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "status": status,
            "size_bytes": 2048, "accuracy": {"top1": 0.9}, "speedup_paired": paired, "reason": "why not"}


def test_summary_marks_disturbed_paired_timings_and_lists_rows_that_are_not_ok() -> None:
    rows = [_row("baseline"), _row("steady", paired={"speedup": 3.0, "speedup_p10_p90": [2.9, 3.1]}),
            _row("shaky", paired={"speedup": 2.5, "speedup_p10_p90": [2.2, 3.3]}), _row("gone", status="export_failed")]
    lines = summary_lines({"rows": rows})
    assert lines[0].split()[:2] == ["variant", "format"] and set(lines[1]) <= {"-", " "}
    by_variant = {line.split()[0]: line for line in lines[2:6]}
    assert by_variant["steady"].endswith("3.00x") and by_variant["shaky"].endswith("2.50x*")
    assert by_variant["baseline"].endswith("-") and "2 KB" in by_variant["baseline"]
    assert any(line.startswith("  * the machine was busy") and "edgebench ab" in line for line in lines)
    assert lines[-1] == "  export_failed: gone onnx/fp32 on onnxruntime: why not"


def test_no_footnote_without_disturbed_rows() -> None:
    lines = summary_lines({"rows": [_row("steady", paired={"speedup": 3.0, "speedup_p10_p90": [2.9, 3.1]})]})
    assert not any("busy" in line for line in lines)


def test_rows_that_did_not_pass_show_no_speed_up_and_missing_numbers_show_a_dash() -> None:
    rows = [_row("bad", status="validation_failed", paired={"speedup": 2.5, "speedup_p10_p90": [2.2, 3.3]}),
            {**_row("bare"), "size_bytes": 0, "throughput": {"batch_size": 32}, "accuracy": {"top1": None}}]
    lines = summary_lines({"rows": rows})
    bad, bare = lines[2], lines[3]
    assert bad.endswith("-") and "2.50x" not in bad
    assert not any("busy" in line for line in lines)  # a disturbed pair of a failed row is not footnoted
    assert bare.split()[5:] == ["-", "-", "-", "-", "-"]  # size 0, no top-1, no latency, no img/s, no paired
