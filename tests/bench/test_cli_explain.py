"""`edgebench explain` on a finished run whose artifacts are gone or damaged: one line, exit 2, and
results.json as it was (a recomputation would only turn good explanations into failed ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from tests.bench.test_explain_stage import build_run


@pytest.mark.parametrize("damage, message", [
    ("missing", "q8/onnx/int8-static/onnxruntime: its artifact {run}/artifacts/m.int8s.onnx is missing; nothing was changed"),
    ("garbage", "q8/onnx/int8-static/onnxruntime: {run}/artifacts/m.int8s.onnx: not a valid ONNX model"),
])
def test_explain_refuses_a_run_whose_artifact_is_missing_or_damaged(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     damage: str, message: str) -> None:
    run = tmp_path / "run"
    build_run(run)
    artifact = run / "artifacts" / "m.int8s.onnx"
    if damage == "missing":
        artifact.unlink()
    else:
        artifact.write_bytes(b"\x08\x07garbage")
    before = (run / "results.json").read_bytes()
    assert main(["explain", str(run), "--variant", "q8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgebench: error: {message.format(run=run)}"), err
    assert (run / "results.json").read_bytes() == before
    assert not (run / "explanations").exists()
