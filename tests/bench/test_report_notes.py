"""The notes above a report's table (bench.report_notes), one rule at a time on small documents."""

from __future__ import annotations

from bench.report_notes import _alignment_notes, _slower_than_fp32_notes, _transpose_notes, run_notes


def _pruned_doc(after: list[int], flags: list[str]) -> dict:
    info = {"pass": "prune.structured(ratio=0.25)", "channels_before": [24, 48, 48, 64, 10], "channels_after": after}
    rows = [{"variant": "prune-25", "runtime": rt, "compression": {"passes": [info]}} for rt in ("torch", "onnxruntime")]
    return {"environment": {"cpu": {"flags": flags}}, "rows": rows}


def test_report_notes_pruned_widths_that_cpu_kernels_pad() -> None:
    notes = _alignment_notes(_pruned_doc([18, 36, 36, 48, 10], ["avx2", "fma"]))
    assert len(notes) == 1 and "18-36-36-48-10" in notes[0] and "round_to=8" in notes[0]  # once per variant
    assert _alignment_notes(_pruned_doc([16, 32, 32, 48, 10], ["avx2"])) == []  # aligned; the classes are not pruned
    assert _alignment_notes(_pruned_doc([8, 24, 24, 32, 10], ["avx2", "avx512f"])) == []  # 8 is what was measured
    assert _alignment_notes(_pruned_doc([18, 36, 36, 48, 10], ["asimd"])) == []  # not x86: no claim


def test_report_notes_the_tflite_layout_tax() -> None:
    def row(variant: str, transposes: object) -> dict:
        return {"variant": variant, "format": "tflite", "precision": "fp32", "runtime": "litert", "status": "ok",
                "compression": {"transposes": transposes}}

    assert _transpose_notes({"rows": [{"variant": "v", "format": "onnx"}]}) == []  # no TFLite graph: no claim
    assert _transpose_notes({"rows": [row("a", 0), row("b", 0)]}) == []  # no tax: nothing to note
    (note,) = _transpose_notes({"rows": [row("a", 0), row("b", 3), row("c", "?")]})
    assert "in 1 of 2 TFLite graphs: b/tflite/fp32/litert 3" in note


def test_report_notes_reduced_precision_slower_than_its_fp32_parent() -> None:
    def row(variant: str, fmt: str, precision: str, p50: float, paired: float | None = None, status: str = "ok") -> dict:
        runtime = {"onnx": "onnxruntime", "tflite": "litert"}[fmt]
        out = {"variant": variant, "format": fmt, "precision": precision, "runtime": runtime, "status": status,
               "latency": [{"batch_size": 1, "threads": 1, "p50": p50}]}
        if paired is not None:
            out["speedup_paired"] = {"reference": f"baseline/{fmt}/fp32/{runtime}", "speedup": paired}
        return out

    rows = [row("baseline", "onnx", "fp32", 0.100), row("baseline", "tflite", "fp32", 0.150),
            row("baseline", "tflite", "int8", 0.050, paired=3.0),     # faster than its parent, the pairing's reference
            row("small", "tflite", "fp32", 0.024, paired=6.0),
            row("small", "tflite", "fp16", 0.030, paired=6.0),        # p50s 25% apart (drift), paired equal: no note
            row("small", "tflite", "int8", 0.048, paired=3.0),        # slower than its own fp32, not the baseline's
            row("ort-dyn", "onnx", "int8-dynamic", 0.700),             # no paired timing: p50s; its parent is the baseline's
            row("broken", "tflite", "fp32", 0.010, status="run_failed"),
            row("broken", "tflite", "int8", 0.400, paired=0.4)]  # slower than the baseline's fp32: a note if wrongly compared
    (note,) = _slower_than_fp32_notes({"baseline": "baseline", "rows": rows})
    assert "small/tflite/int8/litert 0.50× the speed of small/tflite/fp32/litert (ratio of their paired speed-ups)" in note
    assert ("ort-dyn/onnx/int8-dynamic/onnxruntime 0.14× the speed of baseline/onnx/fp32/onnxruntime "
            "(ratio of their p50s, timed minutes apart)") in note
    assert "fp16" not in note and "baseline/tflite/int8" not in note
    assert "broken" not in note  # its own fp32 row failed: no parent (not the baseline's, another model)
    assert _slower_than_fp32_notes({"baseline": "baseline", "rows": rows[:4]}) == []


def test_slower_than_fp32_note_compares_like_with_like() -> None:
    def row(variant: str, precision: str, latency: list[tuple[int, float]], paired: dict | None = None,
            device: str | None = "cpu") -> dict:
        out = {"variant": variant, "format": "onnx", "precision": precision, "runtime": "onnxruntime", "status": "ok",
               "device": device, "latency": [{"batch_size": 1, "threads": t, "p50": p} for t, p in latency]}
        if paired is not None:
            out["speedup_paired"] = {"reference": "baseline/onnx/fp32/onnxruntime", "batch_size": 1, "threads": 1, **paired}
        return out

    def note(*rows: dict) -> str:
        notes = _slower_than_fp32_notes({"baseline": "baseline", "rows": list(rows)})
        return notes[0] if notes else ""

    base = row("baseline", "fp32", [(1, 0.100), (4, 0.030)])
    # p50s are compared at the fewest threads both rows were timed at (q quantizes the baseline's artifact)
    assert "q/onnx/int8-dynamic/onnxruntime 0.75×" in note(base, row("q", "int8-dynamic", [(4, 0.040)]))
    assert note(row("baseline", "fp32", [(4, 0.030)]), row("q", "int8-dynamic", [(1, 0.100), (4, 0.025)])) == ""
    assert note(base, row("v", "fp32", [(1, 0.1)]), row("v", "int8-static", [(1, 0.1)])) == ""
    # paired speed-ups are divided only when taken against the same row at the same settings, else the p50s decide
    fp32_paired = row("v", "fp32", [(1, 0.050)], paired={"speedup": 5.0})
    assert "0.72× the speed of v/onnx/fp32/onnxruntime (ratio of their paired speed-ups)" in note(
        base, fp32_paired, row("v", "int8-static", [(1, 0.050)], paired={"speedup": 3.6}))
    assert note(base, fp32_paired, row("v", "int8-static", [(1, 0.050)], paired={"speedup": 3.6, "threads": 2})) == ""
    no_reference = {"speedup": 2.0, "reference": None}
    assert note(base, row("v", "fp32", [(1, 0.050)], paired={"speedup": 5.0, "reference": None}),
                row("v", "int8-static", [(1, 0.050)], paired=no_reference)) == ""
    # a parent without a usable p50, or on another device, gives no comparison; a null device is the CPU
    assert note(base, row("v", "fp32", [(1, 0.0)]), row("v", "int8-static", [(1, 0.050)])) == ""
    assert note(base, row("v", "fp32", [(1, 0.010)], device="cuda"), row("v", "int8-static", [(1, 0.050)])) == ""
    assert "0.20×" in note(base, row("v", "fp32", [(1, 0.010)], device=None), row("v", "int8-static", [(1, 0.050)]))


def test_report_notes_a_baseline_that_has_not_learned() -> None:
    classes = [str(i) for i in range(10)]
    chance = {"dataset": {"classes": classes}, "baseline_info": {"val_top1": 0.098}, "rows": []}
    (note,) = run_notes(chance)
    assert note.startswith("the baseline's validation top-1 (9.8%) is near chance (10% for 10 classes)")
    assert run_notes({**chance, "baseline_info": {"val_top1": 0.21}}) == []  # above twice chance
    assert run_notes({**chance, "baseline_info": {"val_top1": 0.2}}) == [note.replace("9.8%", "20.0%")]
    assert run_notes({"rows": [], "baseline_info": {"val_top1": None}, "dataset": {"classes": "?"}}) == []  # malformed: no note


def test_report_notes_interrupted_explanations() -> None:
    (note,) = run_notes({"rows": [], "explanation_set": {"status": "running", "indices": [1, 2]}})
    assert note.startswith("the explanations were interrupted") and note.endswith("edgebench explain RUN_DIR")
    assert run_notes({"rows": [], "explanation_set": {"status": "complete"}}) == []
    assert run_notes({"rows": [], "explanation_set": None}) == []
    # a run stopped in its own explain stage: `explain` refuses unfinished runs, so the note says resume
    stopped = run_notes({"rows": [], "status": "incomplete", "explanation_set": {"status": "running"}})
    assert stopped[-1].endswith("finish them with: edgebench run --resume RUN_DIR")


def test_a_slower_row_whose_pairing_was_disturbed_says_so() -> None:
    def row(precision: str, speedup: float, spread: tuple[float, float]) -> dict:
        return {"variant": "v", "format": "tflite", "precision": precision, "runtime": "litert", "status": "ok",
                "latency": [{"batch_size": 1, "threads": 1, "p50": 0.05}],
                "speedup_paired": {"reference": "baseline/tflite/fp32/litert", "batch_size": 1, "threads": 1,
                                   "speedup": speedup, "speedup_p10_p90": list(spread), "rounds": 20}}

    steady, busy = row("int8", 2.0, (1.95, 2.05)), row("int8", 2.0, (1.6, 2.4))
    fp32 = row("fp32", 4.0, (3.9, 4.1))
    (note,) = _slower_than_fp32_notes({"baseline": "baseline", "rows": [fp32, steady]})
    assert "0.50× the speed of v/tflite/fp32/litert (ratio of their paired speed-ups)" in note
    (note,) = _slower_than_fp32_notes({"baseline": "baseline", "rows": [fp32, busy]})
    assert "(ratio of their paired speed-ups; a timing the machine disturbed, see the note on them)" in note
