"""`edgebench explain` from the command line: a real run explained, and runs whose artifacts or settings
are gone, damaged or replaced: one line, exit 2, and results.json as it was (a recomputation would
turn good explanations into failed ones, or into explanations of another file than the row measured)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.explain_record import slug_of
from bench.results_schema import validate_results
from tests.bench.test_explain_stage import build_run
from tests.conftest import DEBIAN_DATA


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


@pytest.mark.parametrize("status, held, message", [
    ("running", False, "did not finish (status 'running'); complete it with `edgebench run --resume"),  # killed: nothing holds it
    ("incomplete", False, "did not finish (status 'incomplete')"),
    ("running", True, "is still running (another edgebench process holds it)"),
])
def test_explain_refuses_a_run_that_has_not_finished(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     status: str, held: bool, message: str) -> None:
    """Its rows are still to come, and its own explain stage would replace these explanations."""
    from bench.rundir import RunLock

    run = tmp_path / "run"
    build_run(run)
    document = json.loads((run / "results.json").read_text())
    document["status"] = status
    (run / "results.json").write_text(json.dumps(document))
    before = (run / "results.json").read_bytes()
    if held:  # flock is per open file: a second lock in this process behaves like another process's
        with RunLock(run):
            assert main(["explain", str(run), "--quiet"]) == 2
    else:
        assert main(["explain", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert (run / "results.json").read_bytes() == before and not (run / "explanations").exists()


def test_cli_user_errors(tmp_path, capsys):
    from bench.cli import main

    assert main(["explain", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["explain", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


E2E_VARIANTS = """
[[variants]]
name = "int8"
passes = ["quantize.static(images=64)"]
"""


@pytest.mark.e2e
@pytest.mark.skipif(not DEBIAN_DATA.exists(), reason="dataset-fashion-mnist not installed")
def test_cli_explains_a_real_run(tmp_path, capsys):
    from bench.cli import main
    from tests.conftest import TINY_CONFIG

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_CONFIG + E2E_VARIANTS + f'\n[output]\ndir = "{tmp_path / "results"}"\ncache_dir = "{tmp_path / "cache"}"\n')
    assert main(["run", "--config", str(config), "--quick", "--quiet", "--no-explain"]) == 0
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if (p / "results.json").exists()]
    assert main(["explain", str(run_dir), "--samples", "1", "--max-evals", "100"]) == 0
    assert "spearman" in capsys.readouterr().out
    assert "## Explanations" in (run_dir / "report.md").read_text()  # the report was rebuilt with them
    document = json.loads((run_dir / "results.json").read_text())
    assert validate_results(document) == []
    blocks = {(r["variant"], r["format"]): r["explanation"] for r in document["rows"] if r["status"] == "ok"}
    assert blocks[("baseline", "onnx")]["drift"]["spearman_mean"] == 1.0
    assert blocks[("baseline", "torch")]["shared_from"] == slug_of(next(r for r in document["rows"] if r["variant"] == "baseline" and r["format"] == "onnx"))
    int8 = next(r for r in document["rows"] if (r["variant"], r["format"]) == ("int8", "onnx"))
    if int8["status"] == "ok":  # its own explanation, computed on the int8 artifact
        assert blocks[("int8", "onnx")]["shared_from"] is None and blocks[("int8", "onnx")]["seconds_per_image"] > 0
    else:  # a 1-epoch model may fail the int8 validation; nothing else may stop it
        assert int8["status"] == "validation_failed", int8.get("reason")
    assert (run_dir / document["explanation_set"]["comparison_grid"]).is_file()
    assert main(["explain", str(run_dir), "--variant", "baseline", "--max-evals", "120", "--quiet"]) == 2  # set is 1 / 100
    assert main(["explain", str(run_dir), "--variant", "baseline", "--quiet"]) == 0  # joins the existing set
    document = json.loads((run_dir / "results.json").read_text())
    assert document["explanation_set"]["max_evals"] == 100 and len(document["explanation_set"]["indices"]) == 10
