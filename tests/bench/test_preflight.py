"""Checks that run before a run folder exists (bench.preflight): their errors leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from tests.bad_input_files import fake_data

CONFIG = """
[data]
val_size = 50
[baseline]
model = "tinycnn"
epochs = 1
[export]
formats = ["onnx"]
[benchmark]
runtimes = ["onnxruntime"]
[explain]
enabled = false
[output]
dir = "{out}"
cache_dir = "{out}/cache"
[[variants]]
name = "kd"
passes = ["distill(width=0.5, student='no_such_module:factory')"]
"""


def test_a_kd_student_that_cannot_be_imported_stops_the_run_before_training(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG.format(out=tmp_path / "out"))
    assert main(["run", "--config", str(config), "--data-dir", str(fake_data(tmp_path / "data")), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgebench: error: [[variants]] 'kd' distill(student='no_such_module:factory'): cannot import module "
                   "'no_such_module' (No module named 'no_such_module'); it must be importable from the current folder or "
                   "PYTHONPATH"], err
    assert not (tmp_path / "out").exists() or not any(p.name != "cache" for p in (tmp_path / "out").iterdir())
