"""The report's latency-at-every-setting section (bench.report_settings)."""

from __future__ import annotations

from bench.report_settings import html_section, markdown_section, settings_table


def _row(variant: str, latency: list[tuple[int, int, float]], status: str = "ok") -> dict:
    return {"variant": variant, "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "device": "cpu",
            "status": status, "latency": [{"batch_size": b, "threads": t, "p50": p50} for b, t, p50 in latency]}


def test_a_run_of_batch_1_at_one_thread_count_needs_no_section() -> None:
    document = {"rows": [_row("baseline", [(1, 1, 0.1)]), _row("small", [(1, 1, 0.05)])]}
    assert settings_table(document) is None and markdown_section(document) == [] and html_section(document) == ""


def test_every_setting_is_a_column_fewest_threads_first() -> None:
    document = {"rows": [_row("baseline", [(8, 2, 0.4), (1, 2, 0.08), (8, 1, 0.5), (1, 1, 0.1)]),
                         _row("small", [(1, 1, 0.05), (8, 1, 0.2)]),
                         _row("broken", [(1, 1, 9.0)], status="run_failed")]}
    headings, cells = settings_table(document)
    assert headings == ["row", "b1 t1 p50 ms", "b8 t1 p50 ms (img/s)", "b1 t2 p50 ms", "b8 t2 p50 ms (img/s)"]
    assert cells == [["baseline onnx/fp32 onnxruntime", "0.100", "0.500 (16,000)", "0.080", "0.400 (20,000)"],
                     ["small onnx/fp32 onnxruntime", "0.050", "0.200 (40,000)", "-", "-"]]  # not timed there; failed rows left out
    assert markdown_section(document)[0] == "## Latency at every setting"
    assert "<td>0.500 (16,000)</td>" in html_section(document)


def test_a_run_without_batch_1_shows_its_latencies_here() -> None:
    headings, cells = settings_table({"rows": [_row("baseline", [(512, 1, 20.0)])]})
    assert headings == ["row", "b512 t1 p50 ms (img/s)"] and cells[0][1] == "20.000 (25,600)"
