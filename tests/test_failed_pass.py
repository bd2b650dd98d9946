"""A pass that crashes: its variant's rows say export_failed and why, the run completes, and a resumed
run tries the pass again (a crash may be transient, e.g. out of memory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import variants as variants_module
from bench.cli import main
from bench.results_schema import validate_results
from tests.conftest import DEBIAN_DATA, TINY_CONFIG

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not DEBIAN_DATA.exists(), reason="dataset-fashion-mnist not installed")]

CONFIG = TINY_CONFIG.replace("[benchmark]\n", "[benchmark]\nrobustness = false\nadversarial = false\n") + """
[[variants]]
name = "pruned-int8"
passes = ["prune.structured(ratio=0.5)", "finetune(epochs=0)", "quantize.dynamic()"]
"""


def test_a_crashing_pass_fails_its_rows_and_a_resume_retries_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_resolve = variants_module.resolve

    def crashing_pruning(spec):  # noqa: ANN001, ANN202
        if spec.name != "prune.structured":
            return real_resolve(spec)

        def crash(*_args):  # noqa: ANN002, ANN202
            raise RuntimeError("simulated: out of memory")
        return crash

    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG + f'\n[output]\ndir = "{tmp_path / "results"}"\ncache_dir = "{tmp_path / "cache"}"\n')
    monkeypatch.setattr(variants_module, "resolve", crashing_pruning)
    assert main(["run", "--config", str(config), "--quiet"]) == 0
    (run_dir,) = (tmp_path / "results").iterdir()
    document = json.loads((run_dir / "results.json").read_text())
    assert validate_results(document) == [] and document["status"] == "complete"
    rows = {(r["variant"], r["format"], r["precision"]): r for r in document["rows"]}
    failed = [r for (variant, _, _), r in rows.items() if variant == "pruned-int8"]
    assert {(r["format"], r["precision"]) for r in failed} == {("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8-dynamic")}
    assert all(r["status"] == "export_failed" and "RuntimeError: simulated: out of memory" in r["reason"]
               and r["reason"].startswith("pass prune.structured(") for r in failed)
    assert rows[("baseline", "onnx", "fp32")]["status"] == "ok" and "pruned-int8" not in document["variants_done"]
    assert "pruned-int8" in (run_dir / "report.md").read_text()

    # as if the run had been interrupted after it: a resume runs the pass again, and it works this time
    monkeypatch.setattr(variants_module, "resolve", real_resolve)
    document["status"] = "running"
    (run_dir / "results.json").write_text(json.dumps(document))
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    resumed = json.loads((run_dir / "results.json").read_text())
    statuses = {(r["format"], r["precision"]): r["status"] for r in resumed["rows"] if r["variant"] == "pruned-int8"}
    assert statuses == {("torch", "fp32"): "ok", ("onnx", "fp32"): "ok", ("onnx", "int8-dynamic"): "ok"}
    assert "pruned-int8" in resumed["variants_done"] and validate_results(resumed) == []
