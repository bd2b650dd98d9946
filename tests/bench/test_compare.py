"""`edgebench compare`: row matching, noise-aware latency verdicts, --fail-on thresholds, exit codes."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from bench import cli
from bench.compare import LatencyChange, compare_runs, parse_threshold
from bench.errors import UserError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "report_run"
STAT_KEYS = ("p50", "p90", "p95", "p99", "mean", "std", "min", "max")


def copy_run(dst: Path, factor: float = 1.0, only: Callable[[dict[str, Any]], bool] = lambda row: True,
             edit: Callable[[dict[str, Any]], None] = lambda doc: None) -> Path:
    """The fixture run copied, with the latency samples and stats of some rows multiplied by factor."""
    shutil.copytree(FIXTURE, dst)
    document = json.loads((dst / "results.json").read_text())
    for row in document["rows"]:
        for entry in row["latency"] if only(row) else []:
            entry.update({k: entry[k] * factor for k in STAT_KEYS if k in entry})
            samples_path = dst / entry["samples_file"]
            np.save(samples_path, np.load(samples_path, allow_pickle=False) * factor, allow_pickle=False)
    edit(document)
    (dst / "results.json").write_text(json.dumps(document))
    return dst


def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    return cli.main(argv)


def test_injected_2x_regression_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    slow = copy_run(tmp_path / "slow", factor=2.0)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(slow), "--fail-on", "p50:+10%"]) == 1
    out = capsys.readouterr().out
    assert out.count("FAIL p50:+10%") == 5  # every ok row
    assert "×2.000" in out and "slower" in out


def test_a_gate_fails_only_in_its_own_direction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A 2x speed-up passes p50:+10% (a slow-down gate) and fails p50:-10%; p99 gates like p50."""
    fast = copy_run(tmp_path / "fast", factor=0.5)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(fast), "--fail-on", "p50:+10%", "--fail-on", "p99:+10%"]) == 0
    assert "FAIL" not in capsys.readouterr().out
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(fast), "--fail-on", "p50:-10%"]) == 1
    assert capsys.readouterr().out.count("FAIL p50:-10%") == 5
    slow = copy_run(tmp_path / "slow", factor=2.0)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(slow), "--fail-on", "p99:+10%"]) == 1
    out = capsys.readouterr().out
    # the fixture's ORT samples carry a few outliers, so a p99 of 60 of them is noise even at 2x: only
    # the torch rows' p99 doubles significantly
    assert out.count("FAIL p99:+10%") == 2 and "baseline torch/fp32 torch: p99 +100.00% (ratio ×2.000" in out, out


def test_macro_f1_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def worse_f1(doc: dict[str, Any]) -> None:
        doc["rows"][0]["accuracy"]["f1_macro"] -= 0.008

    worse = copy_run(tmp_path / "worse", edit=worse_f1)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(worse), "--fail-on", "f1:-1pt"]) == 0
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(worse), "--fail-on", "f1:-0.5pt"]) == 1
    assert "f1 -0.80 pt" in capsys.readouterr().out


def test_run_against_itself_passes(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["compare", str(FIXTURE), str(FIXTURE), "--fail-on", "p50:+10%", "--fail-on", "top1:-0.5pt", "--fail-on", "size:+5%"]
    assert run_cli(monkeypatch, argv) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "noise" in out and "exit 0" in out


def test_change_within_noise_does_not_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """+15% on the torch baseline row, whose 60 noisy samples give a CI wider than that: not significant."""
    noisy = copy_run(tmp_path / "noisy", factor=1.15, only=lambda r: (r["variant"], r["runtime"]) == ("baseline", "torch"))
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(noisy), "--fail-on", "p50:+10%", "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    torch_row = next(r for r in result["rows"] if r["key"]["variant"] == "baseline" and r["key"]["runtime"] == "torch")
    lat = torch_row["latency"]["p50"]
    assert lat["ratio"] == pytest.approx(1.15) and lat["ci95"][0] < 1 < lat["ci95"][1] and lat["verdict"] == "noise"


def test_accuracy_and_size_thresholds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def worse(doc: dict[str, Any]) -> None:
        row = doc["rows"][0]
        row["accuracy"]["top1"] -= 0.01
        row["size_bytes"] = int(row["size_bytes"] * 1.10)

    worse_run = copy_run(tmp_path / "worse", edit=worse)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(worse_run), "--fail-on", "top1:-0.5pt"]) == 1
    assert "top1 -1.00 pt" in capsys.readouterr().out
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(worse_run), "--fail-on", "size:+5%"]) == 1
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(worse_run), "--fail-on", "top1:-2pt", "--fail-on", "size:+20%"]) == 0


def test_missing_and_changed_rows_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["rows"] = [r for r in doc["rows"] if r["variant"] != "int8-static"]  # gone in B
        doc["rows"][0].update(status="run_failed", reason="worker timed out")  # was ok
        doc["rows"].append({**doc["rows"][-1], "variant": "prune-new"})  # new in B

    changed = copy_run(tmp_path / "changed", edit=edit)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(changed), "--fail-on", "p50:+10%"]) == 0
    out = capsys.readouterr().out
    assert "only in A: int8-static onnx/int8-static onnxruntime" in out
    assert "only in B: prune-new torch/fp32 torch/cuda" in out
    assert "status changed: baseline torch/fp32 torch (worker timed out)" in out
    assert "ok -> run_failed" in out
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(changed), "--strict", "--format", "md"]) == 1
    out = capsys.readouterr().out
    assert "strict: baseline torch/fp32 torch: ok in A, run_failed in B" in out
    assert "strict: int8-static onnx/int8-static onnxruntime: ok in A, missing in B" in out


def test_strict_fails_when_b_stops_measuring_a_gated_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["rows"][0]["accuracy"] = None  # still ok, but its top-1 was not measured

    unmeasured = copy_run(tmp_path / "unmeasured", edit=edit)
    argv = ["compare", str(FIXTURE), str(unmeasured), "--fail-on", "top1:-0.5pt"]
    assert run_cli(monkeypatch, argv) == 0  # without --strict: nothing to compare, nothing fails
    assert run_cli(monkeypatch, [*argv, "--strict"]) == 1
    assert "strict: baseline torch/fp32 torch: top1 measured in A, missing in B" in capsys.readouterr().out
    assert run_cli(monkeypatch, [*argv[:-2], "--fail-on", "p50:+10%", "--strict"]) == 0  # the gated metric is there


def test_without_samples_compares_stats_and_says_so(tmp_path: Path) -> None:
    slow = copy_run(tmp_path / "slow", factor=2.0)
    shutil.rmtree(slow / "samples")
    comparison = compare_runs(FIXTURE, slow, [parse_threshold("p50:+10%")])
    assert comparison.exit_code == 1
    assert any("without a noise test" in note for note in comparison.notes)
    lat = comparison.pairs[0].latency["p50"]
    assert lat.ci is None and lat.verdict == "no samples" and lat.ratio == pytest.approx(2.0)
    assert "noise not tested" in comparison.failures[0].message


def test_a_handful_of_samples_is_not_tested_against_noise(tmp_path: Path) -> None:
    """Three calls a row (a config's min_calls may allow it): their bootstrap interval would be
    near zero width and call any change significant, so the stats are compared, and said so."""
    a, b = copy_run(tmp_path / "a"), copy_run(tmp_path / "b", factor=1.01)
    for path in [*(a / "samples").glob("*.npy"), *(b / "samples").glob("*.npy")]:
        np.save(path, np.load(path, allow_pickle=False)[:3], allow_pickle=False)
    lat = compare_runs(a, b, [parse_threshold("p50:+10%")]).pairs[0].latency["p50"]
    assert lat.ci is None and lat.verdict == "no samples"


def test_latencies_at_other_thread_counts_are_not_compared(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        for entry in doc["rows"][0]["latency"]:
            entry["threads"] = 2  # B timed this row at 2 threads only: its samples are 2x slower here

    other = copy_run(tmp_path / "other", factor=2.0, only=lambda r: r is not None, edit=edit)
    comparison = compare_runs(FIXTURE, other, [parse_threshold("p50:+10%")])
    assert "p50" not in comparison.pairs[0].latency
    assert not any(f.pair is comparison.pairs[0] for f in comparison.failures)
    assert any("B has no batch-1 latency at 1 thread(s)" in note and comparison.pairs[0].label in note
               for note in comparison.notes)
    # with --strict the gate cannot pass on a row B no longer timed at A's setting
    strict = compare_runs(FIXTURE, other, [parse_threshold("p50:+10%")], strict=True)
    assert strict.exit_code == 1
    assert strict.strict_problems == [f"{comparison.pairs[0].label}: p50 not compared: B has no batch-1 latency at 1 thread(s), A's setting"]


def test_runs_without_batch_1_say_their_latency_gate_was_not_applied(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        for row in doc["rows"]:
            for entry in row["latency"] or []:
                entry["batch_size"] = 8

    a, b = copy_run(tmp_path / "a", edit=edit), copy_run(tmp_path / "b", factor=5.0, edit=edit)
    comparison = compare_runs(a, b, [parse_threshold("p50:+10%")])
    assert comparison.exit_code == 0 and not any(p.latency for p in comparison.pairs)
    assert any("have no latency compared" in note and "A has no batch-1 latency" in note for note in comparison.notes)
    strict = compare_runs(a, b, [parse_threshold("p50:+10%")], strict=True)
    assert strict.exit_code == 1 and all("p50 not compared: A has no batch-1 latency" in p for p in strict.strict_problems)


def test_a_change_exactly_at_the_limit_passes(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["rows"][0]["accuracy"]["top1"] = 0.9186  # 50 of 10,000 images fewer

    def base(doc: dict[str, Any]) -> None:
        doc["rows"][0]["accuracy"]["top1"] = 0.9236

    a, b = copy_run(tmp_path / "a", edit=base), copy_run(tmp_path / "b", edit=edit)
    assert compare_runs(a, b, [parse_threshold("top1:-0.5pt")]).exit_code == 0
    assert compare_runs(a, b, [parse_threshold("top1:-0.49pt")]).exit_code == 1


def test_an_incomplete_run_is_noted(tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["status"] = "incomplete"

    notes = compare_runs(copy_run(tmp_path / "a", edit=edit), FIXTURE, []).notes
    assert "run A is 'incomplete', not complete: it may lack rows (edgebench run --resume finishes it)" in notes
    assert not [n for n in compare_runs(FIXTURE, FIXTURE, []).notes if "not complete" in n]


def test_only_rows_ok_in_both_runs_are_gated(tmp_path: Path) -> None:
    """A validation_failed row's numbers are not a result: its top-1 drop fails no gate (--strict reports B's failures)."""
    def failed(doc: dict[str, Any]) -> None:
        doc["rows"][0].update(status="validation_failed", reason="agreement below 0.97")

    def failed_and_worse(doc: dict[str, Any]) -> None:
        failed(doc)
        doc["rows"][0]["accuracy"]["top1"] -= 0.05

    a, b = copy_run(tmp_path / "a", edit=failed), copy_run(tmp_path / "b", edit=failed_and_worse)
    assert compare_runs(a, b, [parse_threshold("top1:-0.5pt")]).exit_code == 0
    assert compare_runs(FIXTURE, copy_run(tmp_path / "c", edit=lambda d: d["rows"][0]["accuracy"].update(
        top1=d["rows"][0]["accuracy"]["top1"] - 0.05)), [parse_threshold("top1:-0.5pt")]).exit_code == 1


@pytest.mark.parametrize("ci, ratio, verdict", [((1.001, 1.003), 1.002, "same"), ((1.04, 1.06), 1.05, "slower"),
                                                ((0.90, 0.94), 0.92, "faster"), ((0.97, 1.03), 1.0, "noise")])
def test_verdict_needs_a_significant_and_practical_change(ci, ratio, verdict) -> None:
    assert LatencyChange(1.0, ratio, ratio, ci).verdict == verdict


@pytest.mark.parametrize("expr", ["p50:10%", "p50:+10pt", "latency:+5%", "top1:-0.5", "top1:-x pt", "", "size+5%"])
def test_bad_threshold_is_a_user_error_naming_it(expr: str) -> None:
    with pytest.raises(UserError, match="bad --fail-on expression"):
        parse_threshold(expr)


def test_bad_threshold_on_the_command_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(FIXTURE), "--fail-on", "p50:fast"]) == 2
    assert "'p50:fast'" in capsys.readouterr().err


def test_missing_run_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(tmp_path)]) == 2
    assert "has no results.json" in capsys.readouterr().err


def test_parse_threshold_fields() -> None:
    t = parse_threshold("P99:+12.5%")
    assert (t.metric, t.direction, t.limit, t.unit) == ("p99", 1, 12.5, "%")


def test_a_change_in_how_a_runtime_is_called_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def edit(doc: dict[str, Any]) -> None:  # the fixture predates runtime_calls: A records none
        doc["environment"]["runtime_calls"] = {"onnxruntime": "run_with_iobinding"}

    changed = copy_run(tmp_path / "changed", edit=edit)
    assert run_cli(monkeypatch, ["compare", str(FIXTURE), str(changed)]) == 0
    assert "onnxruntime is called differently: A not recorded, B run_with_iobinding" in capsys.readouterr().out


def test_samples_outside_the_run_folder_are_not_read(tmp_path: Path) -> None:
    """A samples_file edited to point elsewhere counts as missing: the stats are compared instead."""
    def elsewhere(doc: dict[str, Any]) -> None:
        for row in doc["rows"]:
            for entry in row["latency"]:
                entry["samples_file"] = "../" + Path(entry["samples_file"]).name

    run = copy_run(tmp_path / "run", edit=elsewhere)
    for name in (run / "samples").iterdir():  # the files sit right where the edited paths point
        shutil.copy(name, tmp_path / name.name)
    result = compare_runs(FIXTURE, run, [parse_threshold("p50:+10%")])
    changes = [pair.latency["p50"] for pair in result.pairs if "p50" in pair.latency]
    assert changes and all(change.ci is None for change in changes)


@pytest.mark.parametrize("damage", [np.array(["abc"] * 100), np.zeros(100, dtype=[("a", "f8"), ("b", "i4")]),
                                    np.full(100, np.nan), np.full(100, np.inf), -np.ones(100), np.zeros(100),
                                    np.ones((10, 10)), np.full(100, 1 + 2j)],
                         ids=["text", "structured", "nan", "inf", "negative", "zero", "2-d", "complex"])
def test_damaged_samples_are_not_read_as_measurements(tmp_path: Path, damage: np.ndarray) -> None:
    """A samples file that holds anything but positive finite latencies counts as missing: the
    recorded stats are compared instead (marked "no samples"), never a NaN or a cast that warns."""
    run = copy_run(tmp_path / "run")
    for path in (run / "samples").glob("*.npy"):
        np.save(path, damage, allow_pickle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning or ComplexWarning would print lines to stderr
        result = compare_runs(FIXTURE, run, [parse_threshold("p50:+10%")])
    changes = [pair.latency["p50"] for pair in result.pairs if "p50" in pair.latency]
    assert changes and all(change.ci is None and change.verdict == "no samples" for change in changes)
    assert result.exit_code == 0
