"""Which artifacts and rows a variant gets, by the shape of its chain (exporters replaced by fakes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from torch import nn

from bench import cells
from bench.cells import Artifact, RunContext, export_artifacts, rows_for_artifact
from bench.variants import Variant
from compress.chain import parse_chain

PRUNE, FINETUNE, STATIC = "prune.structured(ratio=0.5)", "finetune(epochs=1)", "quantize.static(images=8)"


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_context: Callable[..., RunContext]) -> RunContext:
    def fake_file(_model: Any, path: Path, *_args: Any) -> Path:
        path.write_bytes(b"model")
        return path

    def fake_quantize(variant: Variant, source: Artifact | None, folder: Path, *_args: Any) -> Artifact:
        (tmp_path / "q.onnx").write_bytes(b"int8")
        return Artifact("onnx", "int8-static", "q.onnx", {}, info={"quantization": {}}, by_artifact_pass=True)

    def fake_tflite(variant: Variant, source: Artifact | None, folder: Path, context: RunContext, _raw: Any) -> list[Artifact]:
        for p in context.config.export.tflite_precisions:
            (tmp_path / f"{p}.tflite").write_bytes(b"tflite")
        return [Artifact("tflite", p, f"{p}.tflite", {}) for p in context.config.export.tflite_precisions]

    monkeypatch.setattr(cells, "export_torch", fake_file)
    monkeypatch.setattr(cells, "export_onnx", fake_file)
    monkeypatch.setattr(cells, "_quantize_onnx", fake_quantize)
    monkeypatch.setattr(cells, "_tflite", fake_tflite)
    return run_context(["torch", "onnx", "tflite"], ["torch", "onnxruntime", "litert"], ["fp32", "int8"])


def _variant(passes: list[str]) -> Variant:
    calls = parse_chain(passes)
    artifact_pass = next((c for c in calls if c.spec.kind != "model"), None)
    return Variant("v", nn.Identity(), [str(c) for c in calls], artifact_pass)


def _rows(variant: Variant, ctx: RunContext) -> dict[tuple[str, str], Any]:
    artifacts = export_artifacts(variant, ctx, np.zeros((8, 1, 8, 8), np.uint8))
    return {(row.format, row.precision): row for a in artifacts for row in rows_for_artifact(variant, a, ctx)}


def test_a_model_variant_gets_every_format(ctx: RunContext) -> None:
    rows = _rows(_variant([PRUNE, FINETUNE]), ctx)
    assert list(rows) == [("torch", "fp32"), ("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "int8")]
    assert all(row.status == "ok" and len(row.lineage) == 2 for row in rows.values())


def test_a_chain_ending_in_onnx_quantization_also_measures_the_model_it_quantizes(ctx: RunContext) -> None:
    variant = _variant([PRUNE, FINETUNE, STATIC])
    assert variant.changes_model
    rows = _rows(variant, ctx)
    assert list(rows) == [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8-static"), ("tflite", "fp32"), ("tflite", "int8")]
    assert all(row.status == "ok" for row in rows.values())
    assert rows[("onnx", "int8-static")].lineage == variant.lineage  # made by the quantization pass
    for key in [("torch", "fp32"), ("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "int8")]:
        assert rows[key].lineage == variant.lineage[:2], key  # made from the model, not by quantize.static


def test_onnx_quantization_of_the_baseline_alone_points_at_the_baselines_rows(ctx: RunContext) -> None:
    variant = _variant([STATIC])
    assert not variant.changes_model
    rows = _rows(variant, ctx)
    assert list(rows) == [("onnx", "int8-static"), ("torch", "n/a"), ("tflite", "n/a")]
    assert rows[("onnx", "int8-static")].status == "ok"
    for key in [("torch", "n/a"), ("tflite", "n/a")]:
        assert rows[key].status == "skipped" and "the baseline's rows" in rows[key].reason
        assert rows[key].lineage == variant.lineage


def test_resuming_drops_rows_of_a_layout_no_longer_made(tmp_path: Path) -> None:
    from bench.rundir import RunWriter

    def row(variant: str, fmt: str, precision: str, runtime: str) -> dict[str, Any]:
        return {"variant": variant, "format": fmt, "precision": precision, "runtime": runtime, "device": "cpu"}

    old_skip, quantized, other = row("v", "torch", "n/a", "torch"), row("v", "onnx", "int8-static", "onnxruntime"), row("w", "torch", "n/a", "torch")
    writer = RunWriter(tmp_path, {"rows": [old_skip, quantized, other]})
    dropped = writer.drop_rows("v", keep={("v", "onnx", "int8-static", "onnxruntime", "cpu"), ("v", "torch", "fp32", "torch", "cpu")})
    assert dropped == [old_skip] and writer.rows == [quantized, other]


@pytest.mark.parametrize("absent", ["onnx2tf", "ai_edge_litert"])
def test_without_the_tflite_extra_tflite_rows_are_skipped_with_the_install_hint(
        absent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_context: Callable[..., RunContext]) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == absent else real_find_spec(name, *a))
    context = run_context(["tflite"], ["litert"], ["fp32", "int8"])
    artifacts = cells._tflite(_variant([PRUNE]), None, tmp_path, context, np.zeros((8, 1, 8, 8), np.uint8))
    assert [(a.precision, a.skip is not None, a.error) for a in artifacts] == [("fp32", True, None), ("int8", True, None)]
    assert f"{absent} not installed" in artifacts[0].skip and "edgebench[tflite]" in artifacts[0].skip
    # a variant whose pass failed gets the same skipped TFLite cells, not export_failed ones
    calls = parse_chain([PRUNE])
    failed = Variant("v", None, [str(c) for c in calls], None, error="pass prune.structured(...) failed: RuntimeError: boom")
    rows = [row for a in export_artifacts(failed, context, np.zeros((8, 1, 8, 8), np.uint8)) for row in rows_for_artifact(failed, a, context)]
    assert [(row.format, row.status) for row in rows] == [("tflite", "skipped"), ("tflite", "skipped")]


def test_a_variant_whose_pass_failed_gets_an_export_failed_row_in_every_cell(ctx: RunContext) -> None:
    calls = parse_chain([PRUNE, FINETUNE, STATIC])
    variant = Variant("v", None, [str(c) for c in calls], calls[-1], error="pass prune.structured(...) failed: RuntimeError: boom")
    rows = _rows(variant, ctx)
    # the same cells a working chain of this shape gets (see the test above), none silently missing
    assert list(rows) == [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8-static"), ("tflite", "fp32"), ("tflite", "int8")]
    assert all(row.status == "export_failed" and "RuntimeError: boom" in row.reason for row in rows.values())
    assert rows[("onnx", "int8-static")].lineage == variant.lineage and rows[("onnx", "fp32")].lineage == variant.lineage[:2]
