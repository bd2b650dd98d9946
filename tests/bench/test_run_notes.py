"""What `edgebench run` tells the user about a config that does less than they may think."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from tests.bad_input_files import fake_data

BASELINE_ONLY = """
[data]
val_size = 50
[baseline]
model = "tinycnn"
epochs = 0
[export]
formats = ["onnx"]
[benchmark]
runtimes = ["onnxruntime"]
robustness = false
adversarial = false
paired_rounds = 0
[explain]
enabled = false
[output]
dir = "{out}"
cache_dir = "{out}/cache"
"""


def test_a_config_without_variants_and_training_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(BASELINE_ONLY.format(out=tmp_path / "out"))
    assert main(["run", "--config", str(config), "--data-dir", str(fake_data(tmp_path / "data")), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "baseline tinycnn: random initialisation ([baseline] epochs = 0)" in out, out
    assert "note: the config has no [[variants]]: only the baseline is measured" in out, out
