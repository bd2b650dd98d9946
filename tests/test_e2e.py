"""End-to-end: the real CLI on a tiny config and a slice of the real data (about a minute)."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.results_schema import validate_results
from tests.conftest import DEBIAN_DATA

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not DEBIAN_DATA.exists(), reason="dataset-fashion-mnist not installed")]

CHAIN = """
[[variants]]
name = "struct-50-int8"
passes = ["prune.structured(ratio=0.5)", "finetune(epochs=1)", "quantize.static(images=64)"]
"""


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "results.json").exists()) if root.exists() else []


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    from tests.conftest import TINY_CONFIG

    config = tmp / "tiny.toml"
    config.write_text(TINY_CONFIG + CHAIN + f'\n[output]\ndir = "{tmp / "results"}"\ncache_dir = "{tmp / "cache"}"\n')
    assert main(["run", "--config", str(config), "--quick", "--quiet"]) == 0
    (run_dir,) = _run_dirs(tmp / "results")
    return run_dir


def test_quick_run_writes_valid_results_with_ok_rows(tiny_run):
    document = json.loads((tiny_run / "results.json").read_text())
    assert validate_results(document) == []
    assert document["status"] == "complete"
    rows = {(r["variant"], r["format"], r["precision"], r["runtime"]): r for r in document["rows"]}
    torch_row = rows[("baseline", "torch", "fp32", "torch")]
    onnx_row = rows[("baseline", "onnx", "fp32", "onnxruntime")]
    assert torch_row["status"] == "ok" and onnx_row["status"] == "ok"
    assert onnx_row["parity"]["max_abs_diff"] <= 1e-4 and onnx_row["parity"]["n"] == 1000
    assert onnx_row["accuracy"]["top1"] == pytest.approx(torch_row["accuracy"]["top1"], abs=0.002)
    chain = rows[("struct-50-int8", "onnx", "int8-static", "onnxruntime")]
    assert chain["lineage"][0].startswith("prune.structured(ratio=0.5")
    assert chain["lineage"][-1].startswith("quantize.static(")
    assert chain["size_bytes"] < onnx_row["size_bytes"]
    # the chain's model before its ONNX quantization is measured too, in every format, without that pass
    for fmt, runtime in (("torch", "torch"), ("onnx", "onnxruntime")):
        parent = rows[("struct-50-int8", fmt, "fp32", runtime)]
        assert parent["status"] == "ok" and parent["lineage"] == chain["lineage"][:-1]
        assert parent["parity"]["max_abs_diff"] <= 1e-4
    assert rows[("struct-50-int8", "onnx", "fp32", "onnxruntime")]["size_bytes"] > chain["size_bytes"]
    for row in document["rows"]:
        if row["status"] == "ok":
            entry = row["latency"][0]
            samples = np.load(tiny_run / entry["samples_file"], allow_pickle=False)
            assert samples.size == entry["n"] and np.median(samples) == pytest.approx(entry["p50"])
            assert row["calibration"]["ece"] >= 0 and row["robustness"]["mean_corruption_top1"] is not None
            measured = (tiny_run / row["artifact"]).read_bytes()  # which file the row measured, for explain/resume
            assert row["artifact_sha256"] == hashlib.sha256(measured).hexdigest()
        else:
            assert row["reason"]
    assert (tiny_run / "results.csv").read_text().count("\n") == len(document["rows"]) + 1
    assert (tiny_run / "report.html").exists() and (tiny_run / "report.md").exists()


def test_every_variant_row_is_timed_against_its_runtimes_baseline(tiny_run):
    document = json.loads((tiny_run / "results.json").read_text())
    ok = [r for r in document["rows"] if r["status"] == "ok"]
    for row in ok:
        paired = row["speedup_paired"]
        if row["variant"] == "baseline" and row["precision"] == "fp32":
            assert paired is None  # the reference itself
            continue
        assert paired["reference"] == f"baseline/{row['format']}/fp32/{row['runtime']}"
        # --quick: at most 4 rounds of 20 calls, stopped after 2 or 3 once its time cap has passed (a slow machine)
        assert 2 <= paired["rounds"] <= 4 and paired["calls_per_block"] == 20
        timings = [*paired["speedup_p10_p90"], paired["speedup"], paired["reference_p50_ms"], paired["p50_ms"]]
        assert all(math.isfinite(t) and t > 0 for t in timings)  # measured: their values are not for a unit test


def test_second_run_reuses_cached_weights(tiny_run, tmp_path):
    config = tiny_run.parent.parent / "tiny.toml"
    out = tmp_path / "again"
    assert main(["run", "--config", str(config), "--quick", "--quiet", "--out", str(out)]) == 0
    (run_dir,) = _run_dirs(out)
    document = json.loads((run_dir / "results.json").read_text())
    assert document["baseline_info"]["source"] == "cache"
    assert all(p["cached"] for p in document["variants"]["struct-50-int8"]["passes"])


def test_help_imports_no_heavy_framework():
    code = "import sys; from bench.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('torch', 'tensorflow', 'onnx2tf', 'shap') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
