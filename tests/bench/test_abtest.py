"""bench.abtest / `edgebench ab`: interleaved paired latency of two rows of a run."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bench import abtest
from bench.abtest import find_row, paired_latency
from bench.cli import main
from bench.errors import UserError
from bench.export import export_onnx
from bench.inputs import make_input_spec
from bench.zoo import tinycnn
from tests.results_documents import minimal_document


def _scripted_blocks(monkeypatch):
    """Replace the timer: a block of calls to `fn` 'takes' fn() ms per call on a fake clock.

    The tests then check paired_latency's bookkeeping exactly, with no wall-clock timing."""
    clock, order = [0.0], []

    def block(fn, calls):
        per_call = fn()
        order.append((per_call, calls))
        clock[0] += per_call * calls / 1000
        return np.full(calls, float(per_call))

    monkeypatch.setattr(abtest, "_block_ms", block)
    monkeypatch.setattr(abtest, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    return order


def test_paired_latency_is_the_median_of_per_round_block_ratios(monkeypatch):
    order = _scripted_blocks(monkeypatch)
    b_times = iter([1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0.5])  # warm-up, then one slow and one fast round of B
    result = paired_latency(lambda: 2.0, lambda: next(b_times), rounds=6, calls_per_block=20, warmup_calls=5)
    assert result.rounds == 6 and result.calls_per_block == 20
    assert result.ratio_median == 2.0  # per-round ratios 2, 1, 2, 2, 2, 4
    assert result.ratio_p10_p90 == pytest.approx((1.5, 3.0))
    assert (result.a_p50_ms, result.b_p50_ms) == (2.0, 1.0)
    # warm-up of each side, then the order alternates: A B, B A, A B, ...
    assert [t for t, _ in order[:6]] == [2.0, 1.0, 2.0, 1.0, 2.0, 2.0] and order[0][1] == 5 and order[2][1] == 20
    with pytest.raises(UserError, match="at least 2 rounds"):
        paired_latency(lambda: 1.0, lambda: 1.0, rounds=1)


def test_paired_latency_stops_at_max_seconds_after_two_rounds(monkeypatch):
    _scripted_blocks(monkeypatch)
    # a round takes 5 calls x (2 + 1) ms = 15 ms on the fake clock
    capped = paired_latency(lambda: 2.0, lambda: 1.0, rounds=50, calls_per_block=5, warmup_calls=1, max_seconds=0.02)
    assert capped.rounds == 2  # past 20 ms after two rounds, and never fewer than two
    assert paired_latency(lambda: 2.0, lambda: 1.0, rounds=10, calls_per_block=5, warmup_calls=1, max_seconds=1.0).rounds == 10
    assert paired_latency(lambda: 2.0, lambda: 1.0, rounds=10, calls_per_block=5, warmup_calls=1).rounds == 10  # 0 = no cap


def _run(tmp_path):
    spec = make_input_spec((1, 28, 28), (0.286,), (0.353,))
    rows = []
    for name, width in (("wide", 4.0), ("narrow", 0.5)):
        export_onnx(tinycnn(width=width).eval(), tmp_path / f"{name}.onnx", (1, 28, 28))
        rows.append({"variant": name, "lineage": [], "format": "onnx", "precision": "fp32", "runtime": "onnxruntime", "device": "cpu",
                     "status": "ok", "artifact": f"{name}.onnx", "input_spec": spec})
    rows.append({**rows[0], "variant": "broken", "status": "export_failed", "artifact": None})
    rows.append({**rows[0], "variant": "same", "format": "torch", "precision": "n/a", "runtime": "torch", "status": "skipped",
                 "artifact": None})
    (tmp_path / "results.json").write_text(json.dumps(minimal_document(rows)))
    return tmp_path


def test_ab_command_times_two_rows(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["ab", str(run), "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime",
                 "--rounds", "4", "--calls", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rounds"] == 4 and out["calls_per_block"] == 20 and (out["a"], out["b"]) == (
        "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime")
    assert all(math.isfinite(out[k]) and out[k] > 0 for k in ("a_p50_ms", "b_p50_ms", "ratio_median"))


@pytest.mark.parametrize("key, message", [
    ("wide/onnx/fp32", "must be written variant/format/precision/runtime"),
    ("nope/onnx/fp32/onnxruntime", "no row 'nope/onnx/fp32/onnxruntime'"),
    ("broken/onnx/fp32/onnxruntime", "has status 'export_failed'"),
    ("same/torch/n/a/torch", "has status 'skipped'"),  # a skipped row's precision "n/a" holds a slash
])
def test_bad_rows_are_named(tmp_path, key, message):
    document = json.loads((_run(tmp_path) / "results.json").read_text())
    with pytest.raises(UserError, match=message):
        find_row(document, key)


def test_ab_on_a_corrupt_artifact_is_one_line_exit_2(tmp_path, capsys):
    run = _run(tmp_path)
    (run / "narrow.onnx").write_bytes(b"not an onnx file")
    assert main(["ab", str(run), "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgebench: error:")


@pytest.mark.parametrize("option, value, message", [
    ("--rounds", "1", "--rounds must be >= 2"), ("--calls", "0", "--calls must be >= 1"),
    ("--threads", "0", "--threads must be >= 1"), ("--batch", "-3", "--batch must be >= 1"),
    ("--batch", "100000", "--batch must be <= 4096"),  # would exhaust memory, not fail cleanly
])
def test_ab_rejects_bad_options_before_loading(tmp_path, capsys, option, value, message):
    run = _run(tmp_path)
    (run / "narrow.onnx").write_bytes(b"garbage")  # loading it would fail: the option error must come first
    assert main(["ab", str(run), "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime", option, value]) == 2
    assert message in capsys.readouterr().err


def test_ab_on_a_valid_model_that_does_not_take_the_runs_input_is_one_line_exit_2(tmp_path, capsys):
    import torch

    run = _run(tmp_path)
    rgb = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    rgb(torch.zeros(1, 3, 32, 32))
    export_onnx(rgb.eval(), run / "narrow.onnx", (3, 32, 32))  # passes every byte check: a real ONNX model
    assert main(["ab", str(run), "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("edgebench: error: ab: narrow/onnx/fp32/onnxruntime: narrow.onnx cannot be loaded or run "
                             "on onnxruntime with the run's input (NCHW ['N', 1, 28, 28]): ")


def test_ab_refuses_an_artifact_that_is_not_the_file_the_row_measured(tmp_path, capsys):
    """A valid model file swapped in after the run (its sha256 differs from the row's): timing it would
    label another file's latency with the row's name."""
    import hashlib

    run = _run(tmp_path)
    document = json.loads((run / "results.json").read_text())
    for row in document["rows"][:2]:
        row["artifact_sha256"] = hashlib.sha256((run / row["artifact"]).read_bytes()).hexdigest()
    (run / "results.json").write_text(json.dumps(document))
    (run / "narrow.onnx").write_bytes((run / "wide.onnx").read_bytes())
    assert main(["ab", str(run), "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "narrow/onnx/fp32/onnxruntime" in err[0] and "not the file the run measured" in err[0]
