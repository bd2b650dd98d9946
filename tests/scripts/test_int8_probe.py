"""scripts/int8_probe.py runs end to end and prints one timed row per layer kind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tflite

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "int8_probe.py"


BLOCKS = ["stem", "body", "head", "conv1to8", "conv16to24", "conv3x3", "conv1x1", "depthwise", "dense", "classic", "edgecnn"]


def test_int8_probe_prints_a_ratio_per_block():
    done = subprocess.run([sys.executable, str(SCRIPT), "--calls", "20"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split() for line in done.stdout.splitlines() if re.match(rf"({'|'.join(BLOCKS)}) ", line)]
    assert [r[0] for r in rows] == BLOCKS
    for _, fp32, int8, ratio in rows:
        assert float(fp32) > 0 and float(int8) > 0
        assert ratio.endswith("x") and float(ratio[:-1]) == pytest.approx(float(fp32) / float(int8), rel=0.05)
    assert "XNNPACK delegate" in done.stderr  # LiteRT's notice: XNNPACK ran the models


def test_int8_probe_without_xnnpack_runs_tflites_own_kernels():
    done = subprocess.run([sys.executable, str(SCRIPT), "--calls", "20", "--blocks", "stem,edgecnn", "--no-xnnpack"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line.split()[0] for line in done.stdout.splitlines()[1:]] == ["stem", "edgecnn"]
    assert "XNNPACK delegate" not in done.stderr


def test_int8_probe_rejects_an_unknown_block():
    done = subprocess.run([sys.executable, str(SCRIPT), "--blocks", "stem,lstm"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "lstm" in done.stderr and "--blocks" in done.stderr


def test_int8_probe_times_two_given_files(tmp_path):
    from tests.bad_input_files import relu_tflite

    model = relu_tflite(tmp_path / "relu.tflite")
    assert model is not None
    done = subprocess.run([sys.executable, str(SCRIPT), "--calls", "20", "--files", str(model), str(model)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = [line.split() for line in done.stdout.splitlines() if line.startswith("files ")]
    assert float(row[1]) > 0 and float(row[2]) > 0
    missing = subprocess.run([sys.executable, str(SCRIPT), "--files", str(tmp_path / "nope.tflite"), str(model)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "nope.tflite" in missing.stderr
