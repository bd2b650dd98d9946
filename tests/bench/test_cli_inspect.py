"""`edgebench inspect` on valid artifacts (the bad ones are in tests/test_bad_input.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from tests.bad_input_files import external_onnx, relu_tflite


def test_inspect_valid_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Good files pass the same checks as bad ones are refused by: ONNX with in-folder external data, TFLite."""
    pytest.importorskip("ai_edge_litert", reason="the tflite extra is not installed")  # a reported skip, not a silent one
    files = [external_onnx(tmp_path / "onnx"), relu_tflite(tmp_path / "relu.tflite")]
    for path in files:
        assert main(["inspect", str(path)]) == 0
        out = capsys.readouterr().out
        assert "inputs:" in out and "outputs:" in out and "operators" in out
    assert main(["inspect", "--json", str(files[0])]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][0]["shape"] == ["N", 1, 28, 28] and info["operators"]["Conv"] == 5
    assert info["outputs"][0] == {"name": "logits", "shape": ["N", 10], "dtype": "float32", "quantization": None}


def test_inspect_pt2_reads_the_program_without_unpickling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.export import export_torch
    from bench.zoo import tinycnn

    path = export_torch(tinycnn().eval(), tmp_path / "m.pt2", (1, 28, 28))
    assert main(["inspect", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][0]["shape"] == ["N", 1, 28, 28] and info["inputs"][0]["dtype"] == "float32"  # as ONNX and TFLite name it
    assert info["operators"]["aten.conv2d.default"] == 5
    assert np.prod(info["outputs"][0]["shape"][1:]) == 10


def test_an_older_pt2_layout_with_one_pickled_weights_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """torch still loads this layout, by unpickling the file: edgebench never does (bench.pt2_safety)."""
    import zipfile

    from bench.export import export_torch
    from bench.zoo import tinycnn

    good = export_torch(tinycnn().eval(), tmp_path / "m.pt2", (1, 28, 28))
    older = tmp_path / "older.pt2"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(older, "w") as target:
        for info in source.infolist():
            if "/data/weights/" not in info.filename:
                target.writestr(info.filename, source.read(info))
        target.writestr("m/data/weights/model.pt", b"weights in torch's older single-file layout")
    assert main(["inspect", str(older)]) == 2
    err = capsys.readouterr().err
    assert "holds 'data/weights/model.pt', which edgebench does not load" in err and "pickled" in err, err


def test_without_litert_a_tflite_file_is_said_to_be_header_checked_only(tmp_path, monkeypatch, capsys) -> None:
    """A minimal install cannot parse the flatbuffer: a cut-off file must not read as "ok"."""
    import sys

    from bench.cli import main

    monkeypatch.setitem(sys.modules, "ai_edge_litert.schema_py_generated", None)  # as if not installed
    if (litert := sys.modules.get("ai_edge_litert")) is not None:  # an earlier import left it on the package too
        monkeypatch.delattr(litert, "schema_py_generated", raising=False)
    model = tmp_path / "cut.tflite"
    model.write_bytes((16).to_bytes(4, "little") + b"TFL3" + bytes(24))  # a valid header, nothing behind it
    assert main(["inspect", str(model)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{model}: tflite, 32 bytes, header ok (the rest not checked)")
    assert ", ok" not in out and "nodes" not in out and "pip install 'edgebench[tflite]'" in out
    assert main(["inspect", str(model), "--json"]) == 0
    assert '"checked": "header"' in capsys.readouterr().out
