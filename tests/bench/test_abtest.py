"""bench.abtest / `edgebench ab`: interleaved paired latency of two rows of a run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.abtest import find_row, paired_latency
from bench.cli import main
from bench.errors import UserError
from bench.export import export_onnx
from bench.inputs import make_input_spec
from bench.zoo import tinycnn
from tests.results_documents import minimal_document


def test_paired_latency_ranks_the_cheaper_call_faster():
    small, big = np.ones((8, 8)), np.ones((160, 160))
    result = paired_latency(lambda: small @ small, lambda: big @ big, rounds=6, calls_per_block=20, warmup_calls=5)
    assert result.ratio_median < 1  # B (the big product) is slower than A
    assert result.ratio_p10_p90[0] <= result.ratio_median <= result.ratio_p10_p90[1]
    with pytest.raises(UserError, match="at least 2 rounds"):
        paired_latency(lambda: None, lambda: None, rounds=1)


def test_paired_latency_stops_at_max_seconds_after_two_rounds():
    import time

    result = paired_latency(lambda: time.sleep(0.002), lambda: None, rounds=50, calls_per_block=5, warmup_calls=1,
                            max_seconds=0.01)
    assert 2 <= result.rounds < 50  # each round takes >= 10 ms, so the cap ends it early
    assert result.ratio_median > 1  # A sleeps: B is faster


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
    assert out["a_p50_ms"] > 0 and out["b_p50_ms"] > 0 and out["rounds"] == 4
    assert out["ratio_median"] > 1  # the narrow model is faster than the 8x wider one


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


@pytest.mark.parametrize("option, value", [("--rounds", "1"), ("--calls", "0"), ("--threads", "0"), ("--batch", "-3")])
def test_ab_rejects_bad_options_before_loading(tmp_path, capsys, option, value):
    run = _run(tmp_path)
    assert main(["ab", str(run), "wide/onnx/fp32/onnxruntime", "narrow/onnx/fp32/onnxruntime", option, value]) == 2
    assert f"{option} must be >=" in capsys.readouterr().err
