"""The explanation stage on a small synthetic run folder (ONNX fp32, int8 static and dynamic, a
shared fp32 row, a broken artifact), the worker pool's failure handling, and `edgebench explain`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.errors import UserError
from bench.explain_stage import AgreementOffClean, explain_run, plan_rows, slug_of
from bench.explain_worker import run_jobs
from bench.results_schema import validate_results
from explain.shap_explain import choose_explanation_set
from tests.conftest import DEBIAN_DATA

N_TEST = 120
FAST = dict(per_class=1, max_evals=80, seed=0, quiet=True, flip_gallery=2, deletion_steps=4, workers=2)


def _images_and_labels() -> tuple[np.ndarray, np.ndarray]:
    if (DEBIAN_DATA / "t10k-images-idx3-ubyte.gz").exists():
        from bench.data import read_idx

        return (read_idx(DEBIAN_DATA / "t10k-images-idx3-ubyte.gz")[:N_TEST, None],
                read_idx(DEBIAN_DATA / "t10k-labels-idx1-ubyte.gz")[:N_TEST].astype(np.int64))
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N_TEST, 1, 28, 28), dtype=np.uint8), np.arange(N_TEST, dtype=np.int64) % 10


def _row(variant: str, fmt: str, precision: str, runtime: str, artifact: str, spec: dict, status: str = "ok") -> dict:
    return {"variant": variant, "lineage": [] if variant == "baseline" else ["quantize"], "format": fmt,
            "precision": precision, "runtime": runtime, "device": "cpu", "status": status, "reason": None,
            "artifact": artifact, "input_spec": spec, "parity": {"max_abs_diff": 1e-6}, "explanation": None, "notes": []}


def build_run(run_dir: Path) -> dict:
    """A run folder as the pipeline leaves it: results.json, artifacts, logits, test images/labels."""
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_dynamic, quantize_static

    from bench.export import export_onnx
    from bench.inputs import make_input_spec, prepare_input
    from bench.runtimes import load

    images, labels = _images_and_labels()
    for sub in ("work", "logits", "artifacts"):
        (run_dir / sub).mkdir(parents=True)
    np.save(run_dir / "work" / "test_images.npy", images, allow_pickle=False)
    np.save(run_dir / "work" / "test_labels.npy", labels, allow_pickle=False)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 6, 5, stride=3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 8 * 8, 10))
    spec = make_input_spec((1, 28, 28), (0.28,), (0.35,))
    fp32 = export_onnx(model, run_dir / "artifacts" / "m.fp32.onnx", (1, 28, 28))
    calibration = prepare_input(images[:32], spec)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(run_dir / "artifacts" / "m.int8s.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    quantize_dynamic(str(fp32), str(run_dir / "artifacts" / "m.int8d.onnx"))
    (run_dir / "artifacts" / "m.pt2").write_bytes(b"never loaded: this fp32 row shares the ONNX row's explanation")
    (run_dir / "artifacts" / "broken.onnx").write_bytes(b"not an onnx file")
    rows = [_row("baseline", "torch", "fp32", "torch", "artifacts/m.pt2", spec),
            _row("baseline", "onnx", "fp32", "onnxruntime", "artifacts/m.fp32.onnx", spec),
            _row("q8", "onnx", "int8-static", "onnxruntime", "artifacts/m.int8s.onnx", spec),
            _row("q8d", "onnx", "int8-dynamic", "onnxruntime", "artifacts/m.int8d.onnx", spec),
            _row("broken", "onnx", "int8-static", "onnxruntime", "artifacts/broken.onnx", spec),
            _row("skipped", "tflite", "fp32", "litert", None, None, status="skipped")]
    rows[-1].pop("input_spec")
    for row in rows[1:4]:
        predict = load("onnxruntime", run_dir / row["artifact"], 1)
        np.save(run_dir / "logits" / f"{slug_of(row)}.npy", predict(prepare_input(images, spec)).astype(np.float32))
    shutil.copy(run_dir / "logits" / f"{slug_of(rows[1])}.npy", run_dir / "logits" / f"{slug_of(rows[0])}.npy")
    np.save(run_dir / "logits" / f"{slug_of(rows[4])}.npy", np.random.default_rng(0).normal(size=(N_TEST, 10)).astype(np.float32))
    document = {"schema_version": 1, "run_id": "test", "created": "2026-01-01T00:00:00+00:00", "status": "complete",
                "environment": {"python": "3.11", "platform": "linux", "cpu": {"model": "x", "logical_cores": 2}, "packages": {}},
                "dataset": {"name": "fashion-mnist", "test_size": N_TEST, "classes": [f"class{i}" for i in range(10)]},
                "baseline": "baseline", "rows": rows}
    (run_dir / "results.json").write_text(json.dumps(document))
    return document


@pytest.fixture(scope="module")
def explained(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("run") / "r"
    document = build_run(run_dir)
    explain_run(run_dir, document, **FAST)
    return run_dir, document


def _by_variant(document: dict) -> dict:
    return {(r["variant"], r["format"]): r for r in document["rows"]}


def test_every_ok_row_gets_a_block_and_results_json_is_persisted(explained):
    run_dir, document = explained
    rows = _by_variant(document)
    assert rows[("skipped", "tflite")]["explanation"] is None
    for key in [("baseline", "onnx"), ("q8", "onnx"), ("q8d", "onnx"), ("baseline", "torch")]:
        assert rows[key]["explanation"]["status"] == "ok", key
    on_disk = json.loads((run_dir / "results.json").read_text())
    assert [r["explanation"] for r in on_disk["rows"]] == json.loads(json.dumps([r["explanation"] for r in document["rows"]]))
    assert validate_results(on_disk) == []


def test_values_files_round_trip_and_are_additive(explained):
    run_dir, document = explained
    es = document["explanation_set"]
    assert es["indices"] == choose_explanation_set(np.load(run_dir / "work" / "test_labels.npy"), 1, 0).tolist()
    assert es["max_evals"] == 80 and es["masker"] and es["shap_version"] and es["status"] == "complete"
    images = np.load(run_dir / es["images_file"], allow_pickle=False)
    assert images.shape == (10, 28, 28, 1) and images.dtype == np.uint8
    for key in [("baseline", "onnx"), ("q8", "onnx"), ("q8d", "onnx")]:
        block = _by_variant(document)[key]["explanation"]
        values = np.load(run_dir / block["values_file"], allow_pickle=False)
        assert values.shape == images.shape
        assert block["class_indices"] == es["labels"]
        np.testing.assert_allclose(np.array(block["base_values"]) + values.sum(axis=(1, 2, 3)), block["outputs"], atol=1e-4)
        assert 0.0 <= block["faithfulness"]["auc"]["mean"] <= 1.0
        assert np.load(run_dir / block["faithfulness"]["curves_file"], allow_pickle=False).shape == (2, 10, 5)
        assert (run_dir / block["plot"]).is_file() and block["seconds_per_image"] > 0


def test_reference_drift_is_exactly_one_and_fp32_rows_share(explained):
    _, document = explained
    rows = _by_variant(document)
    reference = rows[("baseline", "onnx")]["explanation"]
    assert document["explanation_set"]["reference"] == slug_of(rows[("baseline", "onnx")])
    assert reference["shared_from"] is None
    assert (reference["drift"]["spearman_mean"], reference["drift"]["iou_top10_min"], reference["drift"]["cosine_min"]) == (1.0, 1.0, 1.0)
    shared = rows[("baseline", "torch")]["explanation"]
    assert shared["shared_from"] == slug_of(rows[("baseline", "onnx")])
    assert shared["values_file"] == reference["values_file"] and shared["seconds"] == 0.0
    assert shared["load_s"] is None and shared["runtime_calls"] is None and reference["load_s"] is not None
    quantized = rows[("q8", "onnx")]["explanation"]["drift"]
    assert -1.0 <= quantized["spearman_mean"] <= 1.0 and isinstance(quantized["drifted"], bool)
    assert len(quantized["per_image"]) == 10


def test_broken_artifact_becomes_a_failed_block(explained):
    _, document = explained
    block = _by_variant(document)[("broken", "onnx")]["explanation"]
    assert block["status"] == "failed" and block["reason"]


def test_flip_galleries_and_comparison_grid(explained):
    run_dir, document = explained
    es = document["explanation_set"]
    assert (run_dir / es["comparison_grid"]).is_file()
    assert es["rows_explained"] == 3 and es["rows_shared"] == 1
    for key in [("q8", "onnx"), ("q8d", "onnx")]:
        flips = _by_variant(document)[key]["explanation"]["flips"]
        assert len(flips["indices"]) <= 2 and flips["n_flipped"] >= len(flips["indices"])
        if flips["indices"]:
            assert (run_dir / flips["plot"]).is_file()
            assert np.load(run_dir / flips["values_file"], allow_pickle=False).shape == (len(flips["indices"]), 28, 28, 1)
            assert set(flips["indices"]) <= set(es["reference_flips"]["indices"])


def test_variant_recomputation_needs_matching_settings(explained, tmp_path):
    run_dir, document = explained
    document = json.loads(json.dumps(document))
    with pytest.raises(UserError, match="differ from the run's explanation set \\(max_evals: run \\d+, now 90\\)"):
        explain_run(run_dir, document, **{**FAST, "max_evals": 90}, variant="q8")
    with pytest.raises(UserError, match="no ok rows of variant"):
        explain_run(run_dir, document, **FAST, variant="nope")
    with pytest.raises(TypeError, match="unknown settings"):
        explain_run(run_dir, document, **FAST, drift_treshold=0.3)


@pytest.mark.e2e  # a second fork server start (~15 s of numba compilation)
def test_one_variant_is_recomputed_alone(explained, tmp_path):
    source, _ = explained
    run_dir = tmp_path / "copy"
    shutil.copytree(source, run_dir)
    document = json.loads((run_dir / "results.json").read_text())
    before = _by_variant(document)[("q8d", "onnx")]["explanation"]
    q8_flips = _by_variant(document)[("q8", "onnx")]["explanation"]["flips"]["indices"]
    kept = dict(zip(document["explanation_set"]["reference_flips"]["indices"],
                    np.load(run_dir / document["explanation_set"]["reference_flips"]["values_file"])))
    _by_variant(document)[("q8", "onnx")]["explanation"] = None  # forgotten: only a recomputation brings it back
    _by_variant(document)[("baseline", "torch")]["explanation"]["outputs"] = "stale"  # a copy of the old reference
    explain_run(run_dir, document, **{**FAST, "workers": 1}, variant="q8")
    assert _by_variant(document)[("q8d", "onnx")]["explanation"] == before  # other variants untouched
    q8 = _by_variant(document)[("q8", "onnx")]["explanation"]
    assert q8["status"] == "ok" and q8["flips"]["indices"] == q8_flips  # the gallery a full run chose
    # the reference was recomputed: the fp32 row sharing it has the new block, not the stale copy
    assert _by_variant(document)[("baseline", "torch")]["explanation"]["outputs"] == \
        _by_variant(document)[("baseline", "onnx")]["explanation"]["outputs"]
    # the baseline's values of every variant's flipped images are still on file (merged, not replaced)
    flips = document["explanation_set"]["reference_flips"]
    values = dict(zip(flips["indices"], np.load(run_dir / flips["values_file"])))
    assert set(kept) <= set(values) and all(np.array_equal(kept[k], values[k]) for k in kept)
    assert set(before["flips"]["indices"]) <= set(values)


def test_plan_shares_fp32_rows_and_puts_the_reference_first():
    rows = [{"variant": v, "format": f, "precision": p, "status": s, "artifact": "a", "device": "cpu"}
            for v, f, p, s in [("baseline", "torch", "fp32", "ok"), ("small", "tflite", "int8", "ok"),
                               ("baseline", "tflite", "fp32", "ok"), ("baseline", "onnx", "fp32", "ok"),
                               ("small", "torch", "fp32", "ok"), ("small", "onnx", "fp32", "run_failed")]]
    reference, jobs, shared = plan_rows(rows, "baseline", None, share_fp32=True)
    assert reference == 3 and jobs == [3, 1, 4]
    assert shared == {0: 3, 2: 3}
    assert plan_rows(rows, "baseline", None, share_fp32=False)[1] == [3, 0, 1, 2, 4]
    _, jobs, shared = plan_rows(rows, "baseline", "small", share_fp32=True)
    assert jobs == [3, 1, 4]  # the reference comes along ...
    assert shared == {0: 3, 2: 3}  # ... and so do the rows that share it
    # an fp32 row that does not agree with its primary off the clean images gets its own explanation
    _, jobs, shared = plan_rows(rows, "baseline", None, share_fp32=True, agree=lambda i, source: i != 2)
    assert jobs == [3, 1, 2, 4] and shared == {0: 3}


def test_fp32_rows_share_only_when_they_agree_on_the_corrupted_images(tmp_path):
    rows = [{"variant": "baseline", "lineage": [], "format": f, "precision": "fp32", "runtime": r, "device": "cpu", "status": "ok",
             "artifact": "a", "parity": {"tolerance": 1e-4}} for f, r in [("onnx", "onnxruntime"), ("tflite", "litert")]]
    onnx, tflite = rows
    assert AgreementOffClean(tmp_path, rows)(1, 0)  # no corrupted copies in this run: parity alone decides
    (tmp_path / "logits").mkdir()
    logits = np.random.default_rng(0).standard_normal((50, 10)).astype(np.float32)
    np.save(tmp_path / "logits" / f"{slug_of(onnx)}__robustness.npy", logits)
    np.save(tmp_path / "logits" / f"{slug_of(tflite)}__robustness.npy", logits + 5e-5)
    agree = AgreementOffClean(tmp_path, rows)
    assert agree(1, 0) and agree.differences[1] == (pytest.approx(5e-5, rel=0.01), 50)
    np.save(tmp_path / "logits" / f"{slug_of(tflite)}__robustness.npy", logits + np.eye(50, 10, dtype=np.float32) * 1e-3)
    assert agree(1, 0), "read once per row: a run's logits do not change while it is explained"
    assert not AgreementOffClean(tmp_path, rows)(1, 0)


@pytest.mark.e2e  # a second fork server start (~15 s of numba compilation)
def test_failing_and_overrunning_jobs_fail_alone(explained, tmp_path):
    run_dir, document = explained
    row = _by_variant(document)[("q8", "onnx")]
    job = {"runtime": "onnxruntime", "device": "cpu", "artifact": str(run_dir / row["artifact"]), "input_spec": row["input_spec"],
           "images": str(run_dir / "work" / "test_images.npy"), "masker": "blur(10,10)", "batch_size": 50, "seed": 0,
           "threads": 1, "one_at_a_time": False, "deletion_steps": 4, "max_evals": 40,
           "sets": {"main": {"indices": [0, 1], "classes": [0, 1], "values_out": str(tmp_path / "v.npy")}}}
    slow = {**job, "max_evals": 10**7, "sets": {"main": {**job["sets"]["main"], "values_out": str(tmp_path / "slow.npy")}}}
    results: dict[int, dict] = {}
    run_jobs([{"not": "a job"}, slow, job], tmp_path / "log.txt", lambda k, r: results.__setitem__(k, r), workers=2,
             job_timeout_s=10)  # the ok job needs ~1 s beside the hog; a margin for a busy shared machine
    assert results[0]["status"] == "failed" and "KeyError" in results[0]["reason"]
    assert results[1]["status"] == "failed" and "no result within" in results[1]["reason"]
    assert results[2]["status"] == "ok" and np.load(tmp_path / "v.npy").shape == (2, 28, 28, 1)


def test_missing_or_mismatched_test_images_and_labels_are_named(tmp_path: Path) -> None:
    """`edgebench explain` reads the images and labels `run` saved in work/: a folder without them
    (copied without work/, or hand-edited) stops with a line naming the file."""
    from bench.explain_stage import _run_images

    (tmp_path / "work").mkdir()
    with pytest.raises(UserError, match=r"work/test_images.npy is missing"):
        _run_images(tmp_path)
    (tmp_path / "work" / "test_images.npy").write_bytes(b"")
    with pytest.raises(UserError, match=r"test_images.npy cannot be read as the run's test images"):
        _run_images(tmp_path)
    np.save(tmp_path / "work" / "test_images.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match=r"test_images.npy cannot be read .*Python objects"):  # refused, not unpickled
        _run_images(tmp_path)
    np.save(tmp_path / "work" / "test_images.npy", np.zeros((4, 28, 28), np.uint8), allow_pickle=False)
    with pytest.raises(UserError, match=r"holds uint8 images of shape \(4, 28, 28\)"):
        _run_images(tmp_path)
    np.save(tmp_path / "work" / "test_images.npy", np.zeros((4, 1, 28, 28), np.uint8), allow_pickle=False)
    with pytest.raises(UserError, match=r"work/test_labels.npy is missing"):
        _run_images(tmp_path)
    np.save(tmp_path / "work" / "test_labels.npy", np.zeros(3, np.int64), allow_pickle=False)
    with pytest.raises(UserError, match=r"holds \(3,\) labels for 4 test images"):
        _run_images(tmp_path)
    np.save(tmp_path / "work" / "test_labels.npy", np.arange(4), allow_pickle=False)
    _, images, labels = _run_images(tmp_path)
    assert images.shape == (4, 1, 28, 28) and labels.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("logits", [np.zeros((3, 3)), np.zeros(10), np.array([["a", "b"]] * 10), np.zeros((10, 1))],
                         ids=["other-length", "1-d", "text", "one-class"])
def test_saved_logits_that_are_no_class_scores_are_named(tmp_path: Path, logits: np.ndarray) -> None:
    """A row's saved logits replaced by something else (an edited run folder): one UserError naming the
    file, instead of a broadcast error deep in the flip plan."""
    from bench.explain_stage import saved_top1

    path = tmp_path / "row.npy"
    np.save(path, logits, allow_pickle=False)
    with pytest.raises(UserError, match="row.npy holds .* logits of shape"):
        saved_top1(path, 10)
    path.write_bytes(b"not npy")
    with pytest.raises(UserError, match="cannot be read as a row's saved logits"):
        saved_top1(path)
    np.save(path, np.eye(10), allow_pickle=False)
    assert saved_top1(path, 10).tolist() == list(range(10))
