"""The report's "What each pass did" section, from a results.json with one variant per pass kind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import write_report
from bench.report_passes import describe_steps, pass_name, variant_passes

UNSTRUCT = "prune.unstructured(sparsity=0.8, scope='global')"
STRUCT = "prune.structured(ratio=0.5, importance='l2', steps=1, round_to=8)"
FINETUNE_KD = "finetune(epochs=4, lr=0.05, distill=True, temperature=2.0, alpha=0.5)"
DISTILL = "distill(width=0.25, epochs=3, lr=0.1, temperature=4.0, alpha=0.9)"
STATIC = "quantize.static(calibration='minmax', per_channel=True, images=256)"


def _row(variant: str, lineage: list[str], runtime: str, precision: str, *, status: str = "ok",
         compression: dict[str, Any] | None = None, paired: float | None = None, size: int = 1000,
         gzip: int = 900) -> dict[str, Any]:
    fmt = {"torch": "torch", "onnxruntime": "onnx", "litert": "tflite"}[runtime]
    return {"variant": variant, "lineage": lineage, "format": fmt, "precision": precision, "runtime": runtime,
            "device": "cpu", "status": status, "size_bytes": size, "size_gzip_bytes": gzip,
            "compression": compression, "speedup_paired": {"speedup": paired} if paired else None}


def _document() -> dict[str, Any]:
    struct_info = {"pass": STRUCT, "channels_before": [24, 48, 10], "channels_after": [8, 24, 10],
                   "importance": "l2", "round_to": 8}
    kd_info = {"pass": FINETUNE_KD, "epochs": 4, "lr": 0.05, "distill": True, "temperature": 2.0, "alpha": 0.5,
               "losses": [0.47, 0.34]}
    distill_info = {"pass": DISTILL, "student_width": 0.25, "temperature": 4.0, "alpha": 0.9, "epochs": 3,
                    "teacher_top1": 0.93, "student_kd_top1": 0.92,
                    "student_scratch_top1": 0.90, "gap_recovered": 2 / 3}
    rows = [
        _row("baseline", [], "onnxruntime", "fp32", size=1000, gzip=900),
        _row("sparse", [UNSTRUCT], "onnxruntime", "fp32", size=1000, gzip=300, paired=1.01,
             compression={"passes": [{"pass": UNSTRUCT, "scope": "global", "sparsity_requested": 0.8,
                                      "sparsity_reached": 0.79999}], "macs_ratio_to_baseline": 1.0}),
        _row("student", [DISTILL], "litert", "fp32", paired=5.0,
             compression={"passes": [distill_info], "macs_ratio_to_baseline": 0.07}),
        _row("student", [DISTILL], "litert", "int8", paired=3.0,
             compression={"passes": [distill_info], "macs_ratio_to_baseline": 0.07}),
        # the chain's rows of the model it quantizes carry the model passes only and come first; its int8
        # ORT row is the ONNX Runtime headline, its fp32 rows the others'
        _row("chain", [STRUCT, FINETUNE_KD], "torch", "fp32", paired=2.5,
             compression={"passes": [struct_info, kd_info], "macs_ratio_to_baseline": 0.23}),
        _row("chain", [STRUCT, FINETUNE_KD], "onnxruntime", "fp32", size=360, paired=2.9,
             compression={"passes": [struct_info, kd_info], "macs_ratio_to_baseline": 0.23}),
        _row("chain", [STRUCT, FINETUNE_KD], "litert", "fp32", paired=2.7,
             compression={"passes": [struct_info, kd_info], "macs_ratio_to_baseline": 0.23}),
        _row("chain", [STRUCT, FINETUNE_KD, STATIC], "onnxruntime", "int8-static", size=100, gzip=80, paired=3.2,
             compression={"passes": [struct_info, kd_info], "macs_ratio_to_baseline": 0.23,
                          "quantization": {"method": "static", "per_channel": True, "weight_type": "QInt8",
                                           "activation_type": "QUInt8", "calibration": "minmax",
                                           "calibration_images": 256, "fp32_stem": True}}),
    ]
    return {"run_id": "r", "baseline": "baseline", "rows": rows}


def test_pass_name() -> None:
    assert pass_name(STRUCT) == "prune.structured" and pass_name("finetune") == "finetune"


def test_each_pass_kind_is_described_from_its_recorded_outcome() -> None:
    items = {item.variant: item for item in variant_passes(_document())}
    assert set(items) == {"sparse", "student", "chain"}  # the baseline has no passes
    assert items["sparse"].steps == ["global magnitude pruning: sparsity 0.800 reached (asked 0.8)"]
    assert items["student"].steps == ["KD into width-0.25 student (T=4, α=0.9, 3 epochs): 92.00% vs 90.00% for the "
                                      "same student trained without a teacher (teacher 93.00%): recovers 67% of the gap"]
    assert items["chain"].steps == [
        "channels 24-48-10 → 8-24-10 (l2 importance, multiples of 8)",
        "fine-tune 4 epochs at lr 0.05 with KD from the baseline (T=2, α=0.5), loss 0.470 → 0.340 (epoch means)",
        "ONNX Runtime static int8: weights QInt8 per-channel, activations QUInt8, minmax calibration on 256 images, "
        "stem kept fp32"]


def test_distill_shows_how_well_each_model_fits_its_training_images() -> None:
    info = {"student_width": 0.5, "teacher_top1": 0.93, "student_kd_top1": 0.91, "student_scratch_top1": 0.91,
            "gap_recovered": 0.0, "teacher_train_top1": 0.965, "student_kd_train_top1": 0.92,
            "student_scratch_train_top1": 0.919, "train_fit_images": 10000}
    assert describe_steps([DISTILL], {"passes": [info]})[0].endswith(
        "recovers 0% of the gap; on 10,000 training images: KD student 92.00%, no-teacher student 91.90%, "
        "teacher 96.50%")
    # None is distill's "the no-teacher student is as good as the teacher"; a missing field is not that
    assert describe_steps([DISTILL], {"passes": [{**info, "gap_recovered": None}]})[0].find("no gap to recover") > 0
    without = {k: v for k, v in info.items() if k != "gap_recovered"}
    assert "gap share not recorded" in describe_steps([DISTILL], {"passes": [without]})[0]


def test_distill_with_teacher_init_names_both_controls() -> None:
    info = {"student_width": 0.25, "init": "teacher", "init_top1": 0.1, "teacher_top1": 0.93, "student_kd_top1": 0.915,
            "student_scratch_top1": 0.90, "gap_recovered": 0.5, "student_init_only_top1": 0.909}
    text = describe_steps([DISTILL], {"passes": [info]})[0]
    assert text.startswith("KD into width-0.25 student initialised from the teacher's strongest channels")
    assert text.endswith("91.50% vs 90.00% for the same student trained from random weights without a teacher "
                         "(teacher 93.00%): recovers 50% of the gap; the teacher's weights alone (no KD loss) give "
                         "90.90%, 10.00% before training")
    with_share = describe_steps([DISTILL], {"passes": [{**info, "gap_recovered_by_kd_loss": 0.28}]})[0]
    assert with_share.endswith("10.00% before training; the KD loss adds +0.60 pt to those weights (28% of the gap they leave)")
    losing = describe_steps([DISTILL], {"passes": [{**info, "student_kd_top1": 0.905, "gap_recovered_by_kd_loss": -0.19}]})[0]
    assert losing.endswith("; the KD loss adds -0.40 pt to those weights (-19% of the gap they leave)")
    no_gap = describe_steps([DISTILL], {"passes": [{**info, "gap_recovered_by_kd_loss": None}]})[0]
    assert no_gap.endswith("; those weights alone leave no gap to the teacher")


def test_a_gap_share_within_the_noise_of_the_test_set_says_so() -> None:
    # a short run whose teacher is at chance level: the share is arithmetic on noise
    chance = {"student_width": 0.5, "epochs": 1, "teacher_top1": 0.094, "student_kd_top1": 0.088,
              "student_scratch_top1": 0.066, "gap_recovered": 0.79}
    text = describe_steps([DISTILL], {"passes": [chance]}, eval_images=500)[0]
    assert "(T=" not in text and "(1 epoch)" in text  # one epoch, not "1 epochs"
    assert text.endswith("recovers 79% of the gap (a gap of 2.80 pt is within the noise of 500 test images, "
                         "±3.4 pt, so this share means little)")
    # the default run's gap (2.96 pt on 10,000 images, ±0.8 pt) is clear of it; without a count, no caution
    clear = {**chance, "teacher_top1": 0.9303, "student_kd_top1": 0.9109, "student_scratch_top1": 0.9007, "gap_recovered": 0.34}
    assert describe_steps([DISTILL], {"passes": [clear]}, eval_images=10_000)[0].endswith("recovers 34% of the gap")
    assert "noise" not in describe_steps([DISTILL], {"passes": [chance]})[0]
    # the teacher-initialised student's second share gets the same caution
    tinit = {**chance, "init": "teacher", "init_top1": 0.1, "student_init_only_top1": 0.09, "gap_recovered_by_kd_loss": -0.5}
    assert "(-50% of the gap they leave; a gap of 0.40 pt is within the noise of 500 test images" in \
        describe_steps([DISTILL], {"passes": [tinit]}, eval_images=500)[0]


def test_the_gap_caution_counts_the_runs_test_images() -> None:
    document = _document()
    document["dataset"] = {"test_size": 200}
    info = {"student_width": 0.25, "teacher_top1": 0.5, "student_kd_top1": 0.49, "student_scratch_top1": 0.48,
            "gap_recovered": 0.5}
    document["rows"].append(_row("kd-tiny", [DISTILL], "onnxruntime", "fp32", compression={"passes": [info]}))
    steps = next(v.steps for v in variant_passes(document) if v.variant == "kd-tiny")
    assert "within the noise of 200 test images" in steps[0]


def test_a_failed_fp32_row_is_not_replaced_by_another_precision() -> None:
    document = _document()
    student_fp32 = document["rows"][2]
    assert (student_fp32["variant"], student_fp32["precision"]) == ("student", "fp32")
    student_fp32["status"] = "run_failed"
    items = {item.variant: item for item in variant_passes(document)}
    assert items["student"].paired["litert"] is None  # not the int8 row's 3.0


def test_outcomes_recorded_for_another_pass_are_not_used() -> None:
    info = {"pass": "prune.structured(ratio=0.7)", "channels_before": [8], "channels_after": [2]}
    assert describe_steps([STRUCT], {"passes": [info]}) == [STRUCT]


@pytest.mark.parametrize("field, value", [
    ("compression", "broken"), ("compression", [1, 2]), ("lineage", "prune.structured"), ("lineage", None),
    ("speedup_paired", "3x"), ("speedup_paired", {"speedup": "fast", "speedup_p10_p90": ["a", 1]}),
    ("size_bytes", "big"),
])
def test_malformed_rows_never_stop_the_report(tmp_path: Path, field: str, value: Any) -> None:
    document = _document()
    for row in document["rows"]:
        row[field] = value
    document["rows"][4]["compression"] = {"passes": [{"pass": STRUCT, "channels_before": 24, "channels_after": None},
                                                     {"pass": FINETUNE_KD, "losses": 0.5, "epochs": "four"}]}
    (tmp_path / "results.json").write_text(json.dumps(document))
    html_path, md_path = write_report(tmp_path)
    assert "What each pass did" in md_path.read_text() and html_path.read_text().endswith("</html>\n")


def test_an_odd_baseline_name_never_stops_the_report(tmp_path: Path) -> None:
    document = {**_document(), "baseline": ["not", "a", "name"]}
    (tmp_path / "results.json").write_text(json.dumps(document))
    _, md_path = write_report(tmp_path)
    assert "What each pass did" in md_path.read_text()  # the sections still come, without the ratios to it


def test_theory_next_to_the_measurement() -> None:
    items = {item.variant: item for item in variant_passes(_document())}
    sparse, student, chain = items["sparse"], items["student"], items["chain"]
    assert sparse.onnx_size_ratio == pytest.approx(1.0) and sparse.onnx_gzip_ratio == pytest.approx(300 / 900)
    assert chain.macs_ratio == pytest.approx(0.23) and chain.paired == {"torch": 2.5, "onnxruntime": 3.2, "litert": 2.7}
    assert chain.onnx_size_ratio == pytest.approx(0.1)  # the int8 ONNX file, not the fp32 one it was made from
    assert student.paired["litert"] == 5.0  # the fp32 row, not the int8 one
    assert student.onnx_size_ratio is None  # no ONNX row


def test_structured_pruning_options_and_malformed_fields() -> None:
    info = {"channels_before": [8, 16], "channels_after": [4, 8], "importance": "taylor", "steps": 3, "round_to": "x"}
    assert describe_steps([STRUCT], {"passes": [info]}) == ["channels 8-16 → 4-8 (taylor importance, 3 steps)"]
    kept = {"channels_before": [8, 8, 16], "channels_after": [8, 8, 16], "importance": "l2", "round_to": 16}
    assert describe_steps([STRUCT], {"passes": [kept]}) == [
        "channels 8-8-16 → 8-8-16 (l2 importance, multiples of 16; no channel was removed: this model is the one before the pass)"]
    assert describe_steps([STRUCT], {"passes": [{**kept, "steps": 2}]})[0].endswith(
        "no channel was removed, though the recovery fine-tunes between steps changed the weights)")


def test_a_kd_loss_is_named_when_there_was_no_gap() -> None:
    info = {"student_width": 0.5, "teacher_top1": 0.90, "student_kd_top1": 0.70, "student_scratch_top1": 0.95,
            "gap_recovered": None}
    assert describe_steps([DISTILL], {"passes": [info]})[0].endswith(
        "(teacher 90.00%): no gap to recover, and KD cost 25.00 pt against that student")
    close = {**info, "student_kd_top1": 0.8997, "student_scratch_top1": 0.9000}
    assert describe_steps([DISTILL], {"passes": [close]}, eval_images=10_000)[0].endswith(
        "and KD cost 0.03 pt against that student (within the noise of 10,000 test images, ±0.8 pt (two standard errors))")


def test_unknown_pass_or_missing_outcome_shows_the_lineage_entry() -> None:
    assert describe_steps(["my.pass(x=1)", STATIC], {"passes": [{"pass": "my.pass(x=1)"}]}) == ["my.pass(x=1)", STATIC]
    assert describe_steps([STRUCT], {}) == [STRUCT]


def test_both_reports_carry_the_section(tmp_path: Path) -> None:
    document = _document()
    document["rows"][1]["lineage"] = ["custom(x='a | b') <b>x</b>"]  # shown as written; must break neither format
    (tmp_path / "results.json").write_text(json.dumps(document))
    html_path, md_path = write_report(tmp_path)
    html, md = html_path.read_text(), md_path.read_text()
    section = md.split("## What each pass did", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 3 and all(line.count(" | ") == lines[0].count(" | ") for line in lines)
    chain = next(line for line in lines if line.startswith("| chain |"))
    assert "<br>2. fine-tune 4 epochs" in chain and chain.endswith("| 0.10× | 0.09× | 0.23× | 2.50× | 3.20× | 2.70× |")
    assert "What each pass did" in html and "<li>KD into width-0.25 student" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "a \\| b" in section


def test_no_variants_no_section(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"baseline": "baseline", "rows": _document()["rows"][:1]}))
    html_path, md_path = write_report(tmp_path)
    assert "## What each pass did" not in md_path.read_text() and "<h2>What each pass did" not in html_path.read_text()


def test_quantization_says_what_happened_to_the_stem_not_what_was_asked() -> None:
    from bench.report_passes import _quantization

    asked = {"method": "static", "per_channel": True, "weight_type": "QInt8", "activation_type": "QUInt8",
             "calibration": "minmax", "calibration_images": 256, "fp32_stem": True}
    left = _quantization({**asked, "stem": "stem left int8: its max-pool does not directly follow a Relu of the first Conv"})
    assert left.endswith("stem left int8: its max-pool does not directly follow a Relu of the first Conv")
    assert "kept fp32" not in left
    assert "stem" not in _quantization({**asked, "fp32_stem": False})


def test_a_kd_fine_tune_is_compared_with_the_same_passes_fine_tuned_without_kd() -> None:
    from bench.report_kd import kd_finetune_controls

    plain_finetune = "finetune(epochs=4, lr=0.05, distill=False, temperature=4.0, alpha=0.9)"
    document = _document()
    for row in document["rows"]:
        if row["variant"] == "chain" and row["precision"] == "fp32":
            row["accuracy"] = {"top1": 0.9253}
    document["rows"].append({**_row("pruned", [STRUCT, plain_finetune], "torch", "fp32"), "accuracy": {"top1": 0.9250}})
    # another budget is not the same passes: no control
    document["rows"].append(_row("pruned-longer", [STRUCT, plain_finetune.replace("epochs=4", "epochs=8")], "torch", "fp32"))
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in document["rows"]:
        by_variant.setdefault(row["variant"], []).append(row)
    found = kd_finetune_controls(by_variant)
    assert list(found) == ["chain"] and (found["chain"].control, found["chain"].where) == ("pruned", "torch")
    assert (found["chain"].control_top1, found["chain"].kd_top1) == (0.9250, 0.9253)
    items = {item.variant: item for item in variant_passes(document)}
    assert items["chain"].steps[1].endswith("; the same passes fine-tuned without KD (pruned): fp32 top-1 92.50%, "
                                            "with KD 92.53% (on torch)")
    # a control whose only ok fp32 row is on another device is not compared with these CPU rows
    by_variant["pruned"][0]["device"] = "cuda"
    assert kd_finetune_controls(by_variant) == {}
    by_variant["pruned"][0]["device"] = "cpu"
    assert "without KD" not in " ".join(items["pruned"].steps + items["pruned-longer"].steps)
    # without a matching variant in the config, nothing is claimed
    del document["rows"][-2]
    assert "without KD" not in " ".join(item for v in variant_passes(document) for item in v.steps)


def test_a_kd_difference_within_the_noise_of_the_test_set_says_so() -> None:
    from bench.report_kd import KdControl, difference_within_noise

    # the default run's quarter-width student: a clear gap, but KD moved it by -0.03 pt, well inside ±0.8 pt
    noise = "within the noise of 10,000 test images, ±0.8 pt (two standard errors)"
    w25 = {"student_width": 0.25, "epochs": 3, "teacher_top1": 0.9303, "student_kd_top1": 0.9004,
           "student_scratch_top1": 0.9007, "gap_recovered": -0.01}
    assert describe_steps([DISTILL], {"passes": [w25]}, eval_images=10_000)[0].endswith(
        f"recovers -1% of the gap (KD's -0.03 pt over that student is {noise})")
    # the teacher-initialised student: its +1.02 pt is clear, the KD loss's -0.01 pt on the same weights is not
    tinit = {**w25, "init": "teacher", "student_kd_top1": 0.9109, "student_init_only_top1": 0.9110, "init_top1": 0.11,
             "gap_recovered": 0.34, "gap_recovered_by_kd_loss": -0.01}
    text = describe_steps([DISTILL], {"passes": [tinit]}, eval_images=10_000)[0]
    assert "KD's" not in text and f"(-1% of the gap they leave; that is {noise})" in text
    # a KD fine-tune against the same passes without KD
    control = KdControl(control="pruned", where="torch", control_top1=0.9239, kd_top1=0.9235, step=1)
    assert control.sentence(10_000).endswith(f"with KD 92.35% (on torch; {noise})")
    assert control.sentence().endswith("with KD 92.35% (on torch)")  # no image count: no caution
    assert KdControl("pruned", "torch", 0.90, 0.93, 1).sentence(10_000).endswith("(on torch)")  # 3 pt is clear
    assert difference_within_noise(None, 0.9, 10_000) == "" and difference_within_noise(0.9, 0.9, 0) == ""
