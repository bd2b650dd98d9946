"""`edgebench explain` on a finished run whose artifacts are gone, damaged or replaced: one line, exit 2,
and results.json as it was (a recomputation would turn good explanations into failed ones, or into
explanations of another file than the row measured)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from tests.bench.test_explain_stage import build_run


@pytest.mark.parametrize("damage, message", [
    ("missing", "q8/onnx/int8-static/onnxruntime: its artifact {run}/artifacts/m.int8s.onnx is missing; nothing was changed"),
    ("garbage", "q8/onnx/int8-static/onnxruntime: {run}/artifacts/m.int8s.onnx: not a valid ONNX model"),
    ("replaced", "q8/onnx/int8-static/onnxruntime: its artifact {run}/artifacts/m.int8s.onnx is not the file the run "
                 "measured (its sha256 changed); nothing was changed"),
])
def test_explain_refuses_a_run_whose_artifact_is_missing_or_damaged(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                     damage: str, message: str) -> None:
    run = tmp_path / "run"
    build_run(run)
    artifact = run / "artifacts" / "m.int8s.onnx"
    if damage == "missing":
        artifact.unlink()
    elif damage == "replaced":  # a valid model, but another one than the row measured
        document = json.loads((run / "results.json").read_text())
        row = next(r for r in document["rows"] if r["variant"] == "q8")
        row["artifact_sha256"] = hashlib.sha256(artifact.read_bytes()).hexdigest()
        (run / "results.json").write_text(json.dumps(document))
        shutil.copy(run / "artifacts" / "m.int8d.onnx", artifact)
    else:
        artifact.write_bytes(b"\x08\x07garbage")
    before = (run / "results.json").read_bytes()
    assert main(["explain", str(run), "--variant", "q8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgebench: error: {message.format(run=run)}"), err
    assert (run / "results.json").read_bytes() == before
    assert not (run / "explanations").exists()


def test_explain_refuses_a_changed_artifact_of_a_row_that_shares_an_explanation(tmp_path: Path,
                                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The torch fp32 row takes the ONNX row's explanation without being loaded; if its file is no
    longer the one it measured, that explanation would describe another file."""
    run = tmp_path / "run"
    build_run(run)
    document = json.loads((run / "results.json").read_text())
    torch_row = next(r for r in document["rows"] if r["format"] == "torch")
    torch_row["artifact_sha256"] = hashlib.sha256(b"the file it measured").hexdigest()
    (run / "results.json").write_text(json.dumps(document))
    before = (run / "results.json").read_bytes()
    assert main(["explain", str(run), "--variant", "baseline", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "baseline/torch/fp32/torch: its artifact" in err[0] and "sha256 changed" in err[0], err
    assert (run / "results.json").read_bytes() == before
