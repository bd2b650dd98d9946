"""report.html / report.md from a results.json fixture with every row status, and `edgebench report`."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from bench import cli
from bench.report import write_report
from bench.report_notes import ARM_DOT_NOTE, VNNI_NOTE
from bench.report_charts import pareto_front
from bench.report_table import STATUS_LABELS, summary_lines
from bench.results import STATUSES
from tests.results_documents import minimal_document

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "report_run"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """The fixture run copied (the report writes into its run folder) and its report, made once."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(FIXTURE, run)
    html_path, md_path = write_report(run)
    return run, html_path.read_text(), md_path.read_text()


def test_fixture_has_every_status() -> None:
    document = json.loads((FIXTURE / "results.json").read_text())
    assert {row["status"] for row in document["rows"]} == set(STATUSES)


def test_html_table_has_every_row_and_status_with_reason(report: tuple[Path, str, str]) -> None:
    run, html, _ = report
    document = json.loads((run / "results.json").read_text())
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr") == len(document["rows"])
    for status in STATUSES:
        assert f'class="badge {status}"' in body
    # the reason is on hover (title) and listed below the table
    assert 'title="run failed: worker exited with code -11 (SIGSEGV)"' in body
    assert "Rows that are not ok" in html and "no CUDA device visible to torch" in html


def test_html_escapes_strings_and_is_offline(report: tuple[Path, str, str]) -> None:
    _, html, _ = report
    assert "<script" not in html  # the planted reason <script>alert("x")</script> must be text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; bad &#x27;quote&#x27;" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html), "report must not load anything remote"
    sources = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(sources) >= 5 and all(s.startswith("data:image/png;base64,") for s in sources)


def test_html_contents(report: tuple[Path, str, str]) -> None:
    run, html, _ = report
    for text in ("Pareto frontier", "Latency distributions", "Per-class accuracy", "Explanations",
                 "AMD EPYC", "avx2", "onnxruntime", "3286a161e27baa7ec447d2f95046473ffc52fa36", VNNI_NOTE,
                 "ρ 0.91", "explanations/flips_missing.png"):  # the last: a listed figure that does not exist
        assert text in html, text
    assert sorted(p.name for p in (run / "plots").iterdir()) == [
        "accuracy_latency.png", "latency_distributions.png", "per_class_delta.png", "size_accuracy.png"]


def test_markdown_has_the_same_table_and_reasons(report: tuple[Path, str, str]) -> None:
    run, _, md = report
    document = json.loads((run / "results.json").read_text())
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(document["rows"])  # header + one line per row
    for label, symbol in STATUS_LABELS.values():
        assert f"| {symbol} {label} |" in md
    assert "- **run failed** distill-w50 onnx/fp32 onnxruntime: `worker exited with code -11 (SIGSEGV)`" in md
    assert "![Accuracy vs latency](plots/accuracy_latency.png)" in md
    assert VNNI_NOTE in md


def test_summary_numbers_against_the_baselines() -> None:
    document = json.loads((FIXTURE / "results.json").read_text())
    lines = {(line.row["variant"], line.row["format"], line.row["device"]): line for line in summary_lines(document)}
    ref = lines[("baseline", "torch", "cpu")]
    assert ref.is_reference and ref.speedup_ref == 1.0
    prune_onnx, base_onnx = lines[("prune-struct-50", "onnx", "cpu")], lines[("baseline", "onnx", "cpu")]
    assert prune_onnx.delta_top1_pt == pytest.approx(-1.2)
    # the fixture's batch-1 p50s: prune-struct-50 ONNX 0.02165 ms, baseline ONNX 0.035286 ms, baseline torch 0.6206275 ms
    assert prune_onnx.speedup_rt == pytest.approx(0.035286 / 0.02165)  # against the same runtime
    assert prune_onnx.speedup_ref == pytest.approx(0.6206275 / 0.02165)  # against torch fp32
    assert base_onnx.speedup_rt == pytest.approx(1.0)
    assert prune_onnx.size_ratio_rt == pytest.approx(0.4, abs=0.01)
    failed = lines[("distill-w50", "onnx", "cpu")]
    assert failed.top1 is None and failed.speedup_rt is None


def test_runtime_ratios_are_blank_without_the_baselines_fp32_row_there() -> None:
    document = json.loads((FIXTURE / "results.json").read_text())
    fp32 = next(r for r in document["rows"] if (r["variant"], r["format"], r["precision"]) == ("baseline", "onnx", "fp32"))
    fp32.update(status="run_failed", reason="worker timed out", latency=None)
    quantized = dict(fp32, precision="int8-dynamic", status="ok", latency=[{"batch_size": 1, "threads": 1, "p50": 0.03}])
    document["rows"].append(quantized)  # an ok baseline row on ORT, but not the fp32 reference
    lines = {(line.row["variant"], line.row["format"], line.row["precision"]): line for line in summary_lines(document)}
    prune_onnx = lines[("prune-struct-50", "onnx", "fp32")]
    assert prune_onnx.speedup_rt is None and prune_onnx.size_ratio_rt is None
    assert prune_onnx.speedup_ref is not None  # the torch fp32 reference is still there


def test_failed_and_shared_explanations_are_shown_as_such(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    document = json.loads((run / "results.json").read_text())
    rows = {(r["variant"], r["format"], r["precision"], r["status"]): r for r in document["rows"]}
    rows[("int8-static", "onnx", "int8-static", "ok")]["explanation"] = {
        "status": "failed", "reason": "ValueError: The model is not a valid Flatbuffer buffer", "shared_from": None}
    rows[("baseline", "torch", "fp32", "ok")]["explanation"] = {
        "status": "ok", "shared_from": "prune__onnx", "drift": {"spearman_mean": 0.91, "iou_top10_mean": 0.8}}
    (run / "results.json").write_text(json.dumps(document))
    html_path, md_path = write_report(run)
    md, html = md_path.read_text(), html_path.read_text()
    int8 = next(line for line in md.splitlines() if line.startswith("| ✓ ok | int8-static |"))
    assert "| failed |" in int8
    assert "### Explanations that failed" in md and "not a valid Flatbuffer buffer" in md
    assert "Explanations that failed" in html and "not a valid Flatbuffer buffer" in html
    assert "ρ 0.91 IoU 0.80 (shared)" in md


def test_paired_speedup_column(report: tuple[Path, str, str]) -> None:
    _, html, md = report
    prune = next(line for line in md.splitlines() if line.startswith("| ✓ ok | prune-struct-50 | onnx |"))
    assert "| 2.50× [2.10-2.90] |" in prune
    assert "paired ×rt [p10-p90]" in md and "2.50× [2.10-2.90]" in html
    base = next(line for line in md.splitlines() if line.startswith("| ✓ ok | baseline | onnx |"))
    assert "| - |" in base  # the reference has no paired speed-up against itself


def test_report_survives_missing_blocks(tmp_path: Path) -> None:
    """Only the schema's required fields: every optional block absent or null."""
    rows = [{"variant": "baseline", "lineage": [], "format": "onnx", "precision": "fp32", "runtime": "onnxruntime",
             "status": "ok", "accuracy": None, "latency": [], "explanation": None},
            {"variant": "q", "lineage": ["quantize.dynamic"], "format": "onnx", "precision": "int8-dynamic",
             "runtime": "onnxruntime", "status": "skipped", "reason": None}]
    (tmp_path / "results.json").write_text(json.dumps(minimal_document(rows)))
    html_path, md_path = write_report(tmp_path)
    html = html_path.read_text()
    assert "nothing to draw" in html and "no reason recorded" in html
    assert "<img" not in html and VNNI_NOTE not in html  # int8_dot_product unknown: no claim either way
    assert "| ✓ ok | baseline |" in md_path.read_text()


@pytest.mark.parametrize("cpu, note", [({"flags": ["avx2", "fma"]}, VNNI_NOTE), ({"flags": ["avx2", "avx512_vnni"]}, None),
                                       ({"flags": ["asimd"]}, ARM_DOT_NOTE), ({"flags": ["asimd", "asimddp"]}, None),
                                       ({"flags": ["avx512_vnni"], "int8_dot_product": False}, VNNI_NOTE)])
def test_missing_int8_dot_product_note_follows_the_recorded_cpu(tmp_path: Path, cpu: dict, note: str | None) -> None:
    document = minimal_document([{"variant": "baseline", "lineage": [], "format": "onnx", "precision": "fp32",
                                  "runtime": "onnxruntime", "status": "ok"}])
    document["environment"]["cpu"] = cpu
    (tmp_path / "results.json").write_text(json.dumps(document))
    md = write_report(tmp_path)[1].read_text()
    assert [n for n in (VNNI_NOTE, ARM_DOT_NOTE) if n in md] == ([note] if note else [])


def test_the_latency_chart_outlives_its_samples_but_not_its_rows(tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    write_report(run)
    chart = run / "plots" / "latency_distributions.png"
    drawn = chart.read_bytes()
    # the raw samples removed (a committed example keeps only results.json): the chart drawn from them stays
    shutil.rmtree(run / "samples")
    write_report(run)
    assert chart.read_bytes() == drawn and "plots/latency_distributions.png" in (run / "report.md").read_text()
    # rows whose latency changed since the chart was drawn (a merged or edited results.json): it goes
    document = json.loads((run / "results.json").read_text())
    ok = next(row for row in document["rows"] if row["status"] == "ok" and row.get("latency"))
    ok["latency"][0]["p50"] *= 2
    (run / "results.json").write_text(json.dumps(document))
    write_report(run)
    assert not chart.exists() and "latency_distributions" not in (run / "report.md").read_text()
    # a chart that does not say which rows it shows (drawn by anything else) is not kept either
    ok["latency"][0]["p50"] /= 2
    (run / "results.json").write_text(json.dumps(document))
    with Image.open(io.BytesIO(drawn)) as image:  # the same pixels, saved without the text field
        image.save(chart, format="png")
    write_report(run)
    assert not chart.exists()
    chart.write_bytes(drawn)
    write_report(run)
    assert chart.read_bytes() == drawn
    # no ok row left to show: the chart would be stale, so it goes
    document = json.loads((run / "results.json").read_text())
    for row in document["rows"]:
        row["status"], row["reason"] = "run_failed", "test"
    (run / "results.json").write_text(json.dumps(document))
    write_report(run)
    assert not chart.exists() and "latency_distributions" not in (run / "report.md").read_text()


def test_pareto_front() -> None:
    assert pareto_front([(1.0, 0.8), (2.0, 0.9), (3.0, 0.85), (0.5, 0.5)]) == [3, 0, 1]
    assert pareto_front([(1.0, 0.8), (1.0, 0.9)]) == [1]  # a tie in cost: only the more accurate


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    return cli.main(argv)


def test_cli_report_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    run.mkdir()
    document = json.loads((FIXTURE / "results.json").read_text())
    document["rows"] = [r for r in document["rows"] if r["status"] != "ok"]  # no charts: keeps the test fast
    (run / "results.json").write_text(json.dumps(document))
    assert run_cli(monkeypatch, ["report", str(run)]) == 0
    assert (run / "report.html").is_file() and (run / "report.md").is_file()
    assert str(run / "report.html") in capsys.readouterr().out


def test_cli_report_without_results_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, ["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no results.json" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "results.json").write_text("{not json")
    assert run_cli(monkeypatch, ["report", str(tmp_path)]) == 2
    assert "cannot be read as JSON" in capsys.readouterr().err


def test_report_notes_paired_timings_taken_on_a_busy_machine(report: tuple[Path, str, str]) -> None:
    from bench.report_notes import _disturbed_notes

    _, html, md = report  # the fixture's prune-struct-50 ORT row: 2.50x [2.10-2.90], from before re-timing
    assert "prune-struct-50/onnx/fp32/onnxruntime (2.50× [2.10-2.90], timed once)" in md and "edgebench ab" in html
    steady = {"status": "ok", "variant": "v", "format": "onnx", "precision": "fp32", "runtime": "onnxruntime",
              "speedup_paired": {"speedup": 3.0, "speedup_p10_p90": [2.9, 3.1], "rounds": 20}}
    shaky = {**steady, "variant": "w", "speedup_paired": {"speedup": 3.0, "speedup_p10_p90": [2.2, 3.1], "rounds": 20,
                                                          "attempts": [{}, {}, {}], "kept": 2}}
    broken = [{**steady, "variant": "x", "speedup_paired": paired} for paired in ({"speedup": 3.0}, "3x", [1], None)]
    assert _disturbed_notes({"rows": [steady, *broken]}) == []
    notes = _disturbed_notes({"rows": [steady, shaky, *broken]})
    assert len(notes) == 1 and "w/onnx/fp32/onnxruntime (3.00× [2.20-3.10], 3 timings)" in notes[0]
    assert "v/onnx" not in notes[0]


def test_report_of_an_unfinished_run_says_so_on_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    document = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**document, "status": "incomplete"}))
    assert cli.main(["report", str(run)]) == 0
    assert "note: the run is 'incomplete', not complete: the report shows the rows finished so far" in capsys.readouterr().err


def test_damaged_latency_samples_are_drawn_as_missing(tmp_path: Path) -> None:
    """Samples files of text, NaN or complex numbers are not drawn (nor cast with a warning): the
    report is written from results.json as if the samples were absent."""
    import warnings

    import numpy as np

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    for i, path in enumerate(sorted((run / "samples").glob("*.npy"))):
        np.save(path, [np.array(["abc"] * 50), np.full(50, np.nan), np.full(50, 1 + 2j)][i % 3], allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(run)
    assert not (run / "plots" / "latency_distributions.png").exists()


def test_class_names_are_drawn_as_written(tmp_path: Path) -> None:
    """Image-folder class names are the user's folder names: a '$' must not start matplotlib's
    mathtext (an invalid formula raised ValueError) and a CJK name must not print glyph warnings."""
    import warnings

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    document = json.loads((run / "results.json").read_text())
    classes = document["dataset"]["classes"]
    document["dataset"]["classes"] = ["$\\frac$", "猫", *classes[2:]]
    (run / "results.json").write_text(json.dumps(document))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_report(run)
    assert (run / "plots" / "per_class_delta.png").is_file()
