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


@pytest.mark.parametrize("field, value, message", [
    ("artifact", "../outside.onnx", "q8/onnx/int8-static/onnxruntime: its artifact '../outside.onnx' lies outside the run folder"),
    ("variant", "../../escape", "'../../escape' cannot be part of a file name"),
])
def test_explain_refuses_a_row_edited_to_point_outside_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                               field: str, value: str, message: str) -> None:
    """A hand-edited results.json must not make explain read or write files outside its run folder."""
    run = tmp_path / "run"
    build_run(run)
    shutil.copy(run / "artifacts" / "m.int8s.onnx", tmp_path / "outside.onnx")
    document = json.loads((run / "results.json").read_text())
    next(r for r in document["rows"] if r["variant"] == "q8")[field] = value
    (run / "results.json").write_text(json.dumps(document))
    before, outside = (run / "results.json").read_bytes(), sorted(p.name for p in tmp_path.iterdir())
    assert main(["explain", str(run), "--variant", value if field == "variant" else "q8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert (run / "results.json").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == outside
    assert not (run / "explanations").exists()


@pytest.mark.parametrize("where", ["config", "explanation_set"])
def test_explain_refuses_an_edited_setting_before_replacing_any_explanation(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                            where: str) -> None:
    """A masker no worker can build would turn every good explanation into a failed one."""
    run = tmp_path / "run"
    build_run(run)
    document = json.loads((run / "results.json").read_text())
    if where == "config":
        document.setdefault("config", {}).setdefault("explain", {})["masker"] = "blur(0,0)"
    else:  # --variant takes the settings of the run's earlier explanation set
        document["explanation_set"] = {"masker": "blur(0,0)", "indices": [0], "max_evals": 40, "seed": 0, "batch_size": 50}
    (run / "results.json").write_text(json.dumps(document))
    before = (run / "results.json").read_bytes()
    assert main(["explain", str(run), "--variant", "q8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "[explain].masker" in err[0] and "blur(0,0)" in err[0] and where in err[0], err
    assert (run / "results.json").read_bytes() == before
