"""Checks that run before a run folder exists (bench.preflight): their errors leave nothing behind,
and the notes that tell the user a config does less than they may think."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main
from tests.bad_input_files import TINY_RUN_CONFIG, fake_data

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


BASELINE_ONLY = TINY_RUN_CONFIG + """
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
    # the second run takes the untrained baseline from the cache, and still says it is untrained
    assert main(["run", "--config", str(config), "--data-dir", str(tmp_path / "data"), "--quick"]) == 0
    assert "baseline tinycnn: random initialisation ([baseline] epochs = 0, from the cache)" in capsys.readouterr().out
    # each run's log holds its own lines only: the first run's log file is let go when it ends
    logs = sorted((tmp_path / "out").glob("*/logs/run.log"))
    assert len(logs) == 2 and ["from the cache" in log.read_text() for log in logs] == [False, True], logs


def test_an_onnx_opset_this_torch_cannot_export_stops_a_tflite_only_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TFLite artifacts are converted from an ONNX export, so its opset is checked before training too."""
    config = tmp_path / "c.toml"
    config.write_text(BASELINE_ONLY.format(out=tmp_path / "out").replace('formats = ["torch", "onnx"]', 'formats = ["tflite"]\nonnx_opset = 99')
                      .replace('runtimes = ["torch", "onnxruntime"]', 'runtimes = ["litert"]'))
    assert main(["run", "--config", str(config), "--data-dir", str(fake_data(tmp_path / "data"))]) == 2
    assert "[export].onnx_opset = 99" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_more_threads_than_cores_are_named_before_the_run(small, monkeypatch: pytest.MonkeyPatch) -> None:
    """threads = [1, 64] on a 2-core machine runs, but its 64-thread latency measures oversubscription."""
    import os

    from bench.config import config_from_dict
    from bench.preflight import setting_notes

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    config = config_from_dict({"benchmark": {"threads": [1, 2, 64], "eval_threads": 3}})
    notes = setting_notes(config, small)
    assert any(n.startswith("[benchmark] threads asks for 64 threads, more than the 2 cores") for n in notes), notes
    assert any(n.startswith("[benchmark] eval_threads asks for 3 threads") for n in notes), notes
    assert not any("[baseline] threads" in n for n in notes)  # 0: every core
    assert not any("threads" in n for n in setting_notes(config_from_dict({}), small))


def test_a_missing_tflite_stack_is_named_at_the_start(small, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import preflight
    from bench.config import config_from_dict

    monkeypatch.setattr(preflight, "tflite_unavailable", lambda: "onnx2tf not installed, so no TFLite conversion")
    notes = preflight.setting_notes(config_from_dict({}), small)  # the default formats include tflite
    assert "the TFLite rows will be skipped: onnx2tf not installed, so no TFLite conversion; or drop 'tflite' " \
           "from [export] formats" in notes
    assert not any("TFLite" in n for n in preflight.setting_notes(config_from_dict({"export": {"formats": ["onnx"]}}), small))


def test_explanations_without_the_explain_extra_stop_before_a_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import bench.explain_stage as explain_stage

    monkeypatch.setattr(explain_stage, "missing_dependencies", lambda: ["shap", "opencv-python-headless"])
    config = tmp_path / "c.toml"
    config.write_text(BASELINE_ONLY.format(out=tmp_path / "out").replace("[explain]\nenabled = false\n", ""))
    assert main(["run", "--config", str(config), "--data-dir", str(fake_data(tmp_path / "data"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["edgebench: error: explanations need shap, opencv-python-headless "
                   "(pip install 'edgebench[explain]'), or pass --no-explain"], err
    assert not (tmp_path / "out").exists()
