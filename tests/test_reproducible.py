"""Reproducibility: the same config and seed, run twice with separate caches, gives the same accuracies.

Both runs train the baseline and the variant from scratch (different cache folders) in separate
processes, so this checks seeding of weight init, data order, augmentation, pruning and fine-tuning,
and that exports and runtimes are deterministic: top-1 and the confusion matrix of every row must
be identical, not merely close.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEBIAN_DATA, REPO, TINY_CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not DEBIAN_DATA.exists(), reason="dataset-fashion-mnist not installed")]

# Robustness sets are off: they are not compared here and would double the time on 2 cores.
CONFIG = TINY_CONFIG.replace("[benchmark]\n", "[benchmark]\nrobustness = false\nadversarial = false\n") + """
[[variants]]
name = "sparse"
passes = ["prune.unstructured(sparsity=0.5)", "finetune(epochs=1)"]
"""
KEY = ("variant", "format", "precision", "runtime", "device")


def _run(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    config = folder / "tiny.toml"
    config.write_text(CONFIG + f'\n[output]\ndir = "{folder / "results"}"\ncache_dir = "{folder / "cache"}"\n')
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--config", str(config), "--quick", "--quiet"],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = (folder / "results").iterdir()
    assert proc.stdout.strip() == str(run_dir / "results.json")  # --quiet prints where the run went, only that
    document = json.loads((run_dir / "results.json").read_text())
    assert document["status"] == "complete" and document["baseline_info"]["source"] == "trained"
    return document


def _accuracies(document: dict[str, Any]) -> dict[tuple[str, ...], tuple[str, float | None, list | None]]:
    return {tuple(r[k] for k in KEY): (r["status"], (r.get("accuracy") or {}).get("top1"),
                                       (r.get("accuracy") or {}).get("confusion_matrix")) for r in document["rows"]}


def test_same_seed_same_accuracies_with_separate_caches(tmp_path: Path) -> None:
    first, second = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert first["baseline_info"]["cache_key"] == second["baseline_info"]["cache_key"]
    assert first["baseline_info"]["val_top1"] == second["baseline_info"]["val_top1"]
    a, b = _accuracies(first), _accuracies(second)
    assert a.keys() == b.keys()
    ok = [key for key, value in a.items() if value[0] == "ok"]
    assert len(ok) >= 4, a  # baseline and variant, torch and ONNX Runtime
    for key in a:
        assert a[key] == b[key], f"{key}: {a[key][:2]} vs {b[key][:2]}"
