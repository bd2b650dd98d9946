"""The pytest-benchmark entry point (bench/pytest_artifacts.py) on a tiny hand-made run.

The run holds one ONNX artifact built with onnx.helper (a linear classifier: no torch, no
training), so the check takes seconds. The entry point runs in a child pytest, as a user runs it.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from bench.inputs import make_input_spec
from tests.results_documents import minimal_document

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "bench" / "pytest_artifacts.py"


def _tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], initializer=[weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


@pytest.fixture()
def tiny_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    (run / "work").mkdir()
    _tiny_onnx(run / "artifacts" / "baseline.fp32.onnx")
    np.save(run / "work" / "test_images.npy", np.random.default_rng(0).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8))
    spec = make_input_spec((1, 28, 28), (0.2860,), (0.3530,))
    rows = [
        {"variant": "baseline", "lineage": [], "format": "onnx", "precision": "fp32", "runtime": "onnxruntime",
         "device": "cpu", "status": "ok", "artifact": "artifacts/baseline.fp32.onnx", "input_spec": spec,
         "latency": [{"batch_size": 1, "threads": 1, "unit": "ms", "n": 3, "p50": 0.05, "p90": 0.06, "p99": 0.07, "mean": 0.05}]},
        {"variant": "baseline", "lineage": [], "format": "tflite", "precision": "int8", "runtime": "litert",
         "device": "cpu", "status": "export_failed", "reason": "no converter", "artifact": None, "latency": []},
    ]
    (run / "results.json").write_text(json.dumps(minimal_document(rows, run_id="tiny")))
    return run


def _pytest(tmp_path: Path, run: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEBENCH_RUN"}
    if run is not None:
        env["EDGEBENCH_RUN"] = str(run)
    # run from tmp_path: pytest-benchmark creates its .benchmarks/ folder in the working directory
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "pytest", str(ENTRY), "-p", "no:cacheprovider", "-q", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_benchmarks_every_ok_row(tiny_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = _pytest(tmp_path, tiny_run, f"--benchmark-json={out}", "--benchmark-max-time=0.05",
                     "--benchmark-min-rounds=3", "--benchmark-warmup=off")
    assert result.returncode == 0, result.stdout + result.stderr
    benchmarks = json.loads(out.read_text())["benchmarks"]
    assert [b["name"] for b in benchmarks] == ["test_artifact_latency[baseline-onnx-fp32-onnxruntime-cpu]"]
    assert benchmarks[0]["group"] == "baseline"
    assert benchmarks[0]["extra_info"]["runtime"] == "onnxruntime" and benchmarks[0]["extra_info"]["edgebench_p50_ms"] == 0.05
    assert benchmarks[0]["stats"]["rounds"] >= 3


def test_skips_without_a_run(tmp_path: Path) -> None:
    result = _pytest(tmp_path, None, "-rs")
    # a module-level skip leaves nothing collected: pytest's exit code 5, with the reason shown
    assert result.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, result.stdout
    assert "set EDGEBENCH_RUN=results/<run-id>" in result.stdout and "1 skipped" in result.stdout


def test_a_bad_run_folder_is_an_error(tmp_path: Path) -> None:
    result = _pytest(tmp_path, tmp_path / "nothing-here")
    assert result.returncode != 0 and "has no results.json" in result.stdout


def test_plain_pytest_does_not_collect_it() -> None:
    """Outside testpaths and not named like a test file, so `pytest` from the repo root never runs it."""
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    relative = ENTRY.relative_to(REPO)
    assert not any(relative.is_relative_to(p) for p in options["testpaths"])
    patterns = options.get("python_files", ["test_*.py", "*_test.py"])
    assert not any(fnmatch.fnmatch(ENTRY.name, p) for p in patterns)


def test_a_damaged_artifact_or_results_file_fails_in_one_line(tiny_run: Path, tmp_path: Path) -> None:
    """Checked in Python before ONNX Runtime sees the file, and results.json against the schema."""
    (tiny_run / "artifacts" / "baseline.fp32.onnx").write_bytes(b"\x08\x07garbage")
    result = _pytest(tmp_path, tiny_run)
    assert result.returncode == 1 and "not a valid ONNX model" in result.stdout, result.stdout
    (tiny_run / "results.json").write_text(json.dumps({"rows": []}))
    result = _pytest(tmp_path, tiny_run)
    assert result.returncode != 0 and "does not meet the results schema" in result.stdout, result.stdout


def test_an_edited_run_is_not_benchmarked_under_its_rows(tiny_run: Path, tmp_path: Path) -> None:
    """Test images that are not the run's (here none at all) and an artifact that is not the file the
    row measured (its recorded sha256) each fail before any timing is recorded."""
    out = tmp_path / "bench.json"
    np.save(tiny_run / "work" / "test_images.npy", np.zeros((0, 1, 28, 28), dtype=np.uint8))
    result = _pytest(tmp_path, tiny_run, f"--benchmark-json={out}")
    assert result.returncode == 1 and "expected the run's uint8 test images" in result.stdout, result.stdout
    assert not out.exists() or not json.loads(out.read_text())["benchmarks"]
    np.save(tiny_run / "work" / "test_images.npy", np.zeros((2, 1, 28, 28), dtype=np.uint8))
    document = json.loads((tiny_run / "results.json").read_text())
    document["rows"][0]["artifact_sha256"] = "0" * 64
    (tiny_run / "results.json").write_text(json.dumps(document))
    result = _pytest(tmp_path, tiny_run, f"--benchmark-json={out}")
    assert result.returncode == 1 and "is not the file the run measured" in result.stdout, result.stdout
    assert not out.exists() or not json.loads(out.read_text())["benchmarks"]
