"""The report's "What each pass did" section: per variant, its passes and their outcomes, next to
the MAC ratio (theory) and the measured paired speed-ups (reality).

The summary table says how fast, small and accurate each artifact is; this section says what each
pass bought: the sparsity reached, the channels kept, the share of the teacher gap that KD
recovered, the quantization settings. Everything comes from results.json (the rows' `lineage`
and `compression` blocks); a missing field renders as "-", never an error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from html import escape
from typing import Any, Callable

from bench.report_kd import all_numbers, difference_within_noise, gap_within_noise, kd_finetune_controls
from bench.report_table import fmt_times, md_cell

# The runtimes whose paired speed-up the section shows, in column order, with their headings.
RUNTIME_COLUMNS = (("torch", "torch"), ("onnxruntime", "ONNX Runtime"), ("litert", "LiteRT"))


@dataclass
class VariantPasses:
    variant: str
    steps: list[str]                 # one sentence per pass, in lineage order
    macs_ratio: float | None         # MACs / baseline MACs
    paired: dict[str, float | None]  # runtime -> paired speed-up of the variant's headline row there
    onnx_size_ratio: float | None    # the ONNX file's bytes / the baseline ONNX file's
    onnx_gzip_ratio: float | None    # the same gzip-compressed: where unstructured sparsity pays


def pass_name(lineage_entry: str) -> str:
    """'prune.structured(ratio=0.5)' -> 'prune.structured'."""
    return lineage_entry.split("(", 1)[0].strip()


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "-"


def _num(value: Any, spec: str = "g") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def _unstructured(info: dict[str, Any]) -> str:
    return (f"{info.get('scope', '?')} magnitude pruning: sparsity {_num(info.get('sparsity_reached'), '.3f')} "
            f"reached (asked {_num(info.get('sparsity_requested'))})")


def _structured(info: dict[str, Any]) -> str:
    before, after = _as_list(info.get("channels_before")), _as_list(info.get("channels_after"))
    text = f"channels {'-'.join(map(str, before)) or '?'} → {'-'.join(map(str, after)) or '?'} ({info.get('importance', '?')} importance"
    round_to, steps = info.get("round_to"), info.get("steps")
    if isinstance(round_to, int) and round_to > 1:
        text += f", multiples of {round_to}"
    if isinstance(steps, int) and steps > 1:
        text += f", {steps} steps"
    if before and before == after:  # ratio 0, or channel counts that round back to themselves
        text += ("; no channel was removed: this model is the one before the pass" if not (isinstance(steps, int) and steps > 1)
                 else "; no channel was removed, though the recovery fine-tunes between steps changed the weights")
    return text + ")"


def _finetune(info: dict[str, Any]) -> str:
    epochs = info.get("epochs")
    text = f"fine-tune {_num(epochs)} epoch{'' if epochs == 1 else 's'} at lr {_num(info.get('lr'))}"
    if info.get("distill"):
        text += f" with KD from the baseline (T={_num(info.get('temperature'))}, α={_num(info.get('alpha'))})"
    losses = [x for x in _as_list(info.get("losses")) if isinstance(x, (int, float))]
    if len(losses) > 1:
        text += f", loss {losses[0]:.3f} → {losses[-1]:.3f} (epoch means)"
    elif losses:
        text += f", mean loss {losses[0]:.3f}"
    return text


def _distill(info: dict[str, Any], eval_images: int | None = None) -> str:
    width = info.get("student_width")
    model = info.get("student_model")  # None: the baseline's architecture
    student = f"width-{_num(width)} {f'{model} ' if model else ''}student" if width else "the current model"
    epochs = info.get("epochs")
    settings = ", ".join(f"{label}{info[key]:g}{unit}" for key, label, unit in
                         (("temperature", "T=", ""), ("alpha", "α=", ""),
                          ("epochs", "", " epoch" if epochs == 1 else " epochs"))
                         if isinstance(info.get(key), (int, float)))
    gap = info.get("gap_recovered")
    if isinstance(gap, (int, float)):
        recovered = f"recovers {100 * gap:.0f}% of the gap"
        teacher, kd, scratch = (info.get(k) for k in ("teacher_top1", "student_kd_top1", "student_scratch_top1"))
        if caution := gap_within_noise(teacher, scratch, eval_images):
            recovered += f" ({caution})"
        elif caution := difference_within_noise(kd, scratch, eval_images):  # a share of a gap KD did not measurably close
            recovered += f" (KD's {100 * (kd - scratch):+.2f} pt over that student is {caution})"
    else:  # distill records None when the student without a teacher is as good as the teacher
        recovered = "no gap to recover" if "gap_recovered" in info else "gap share not recorded"
        kd, scratch = info.get("student_kd_top1"), info.get("student_scratch_top1")
        if all_numbers(kd, scratch) and kd < scratch:
            recovered += f", and KD cost {100 * (scratch - kd):.2f} pt against that student"
            if noise := difference_within_noise(kd, scratch, eval_images):
                recovered += f" ({noise})"
    teacher_init = info.get("init") == "teacher"
    if teacher_init:
        student += " initialised from the teacher's strongest channels"
    text = (f"KD into {student}{f' ({settings})' if settings else ''}: {_pct(info.get('student_kd_top1'))} vs "
            f"{_pct(info.get('student_scratch_top1'))} for the same student trained "
            f"{'from random weights ' if teacher_init else ''}without a teacher "
            f"(teacher {_pct(info.get('teacher_top1'))}): {recovered}")
    if teacher_init:
        text += (f"; the teacher's weights alone (no KD loss) give {_pct(info.get('student_init_only_top1'))}, "
                 f"{_pct(info.get('init_top1'))} before training")
        by_loss, kd, init_only = (info.get(k) for k in ("gap_recovered_by_kd_loss", "student_kd_top1", "student_init_only_top1"))
        if all_numbers(by_loss, kd, init_only):
            caution = gap_within_noise(info.get("teacher_top1"), init_only, eval_images) or (
                f"that is {noise}" if (noise := difference_within_noise(kd, init_only, eval_images)) else "")
            text += (f"; the KD loss adds {100 * (kd - init_only):+.2f} pt to those weights "
                     f"({100 * by_loss:.0f}% of the gap they leave{f'; {caution}' if caution else ''})")
        elif "gap_recovered_by_kd_loss" in info and by_loss is None:  # recorded as None: no gap left to close
            text += "; those weights alone leave no gap to the teacher"
    if "teacher_train_top1" in info:  # runs before this field existed, and weights cached by them, lack it
        images = info.get("train_fit_images")
        text += (f"; on {f'{images:,} ' if isinstance(images, int) else ''}training images: KD student "
                 f"{_pct(info.get('student_kd_train_top1'))}, no-teacher student "
                 f"{_pct(info.get('student_scratch_train_top1'))}, teacher {_pct(info.get('teacher_train_top1'))}")
    return text


def _quantization(info: dict[str, Any]) -> str:
    """From the row's compression.quantization block (the ONNX passes record their settings there)."""
    method = info.get("method", "?")
    scales = "per-channel" if info.get("per_channel") else "per-tensor"
    text = f"ONNX Runtime {method} int8: weights {info.get('weight_type', '?')} {scales}, activations {info.get('activation_type', '?')}"
    if method == "static":
        text += f", {info.get('calibration', '?')} calibration on {_num(info.get('calibration_images', info.get('images')))} images"
        if info.get("fp32_stem"):  # what was done, which may be "stem left int8" when the stem could not be kept
            text += f", {info.get('stem') or 'stem kept fp32'}"
    return text


MODEL_PASS_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "prune.unstructured": _unstructured,
    "prune.structured": _structured,
    "finetune": _finetune,
    "distill": _distill,
}


def describe_steps(lineage: list[str], compression: dict[str, Any], eval_images: int | None = None) -> list[str]:
    """One sentence per lineage entry. Model passes record their outcome in compression.passes (in
    order); the ONNX quantization passes in compression.quantization. Unknown passes show as written.
    `eval_images`: how many test images the passes' top-1s were measured on (KD's gap-share caution)."""
    summaries = {**MODEL_PASS_SUMMARIES, "distill": functools.partial(_distill, eval_images=eval_images)}
    infos = iter(_as_list(compression.get("passes")))
    steps = []
    for entry in lineage:
        entry = str(entry)
        name = pass_name(entry)
        if name.startswith("quantize."):
            quantization = compression.get("quantization")
            steps.append(_quantization(quantization) if isinstance(quantization, dict) else entry)
            continue
        info = next(infos, None)
        summarise = summaries.get(name)
        matches = isinstance(info, dict) and info.get("pass", entry) == entry  # outcomes recorded for this very pass
        steps.append(summarise(info) if summarise and matches else entry)
    return steps


def _headline_row(rows: list[dict[str, Any]], runtime: str) -> dict[str, Any] | None:
    """The variant's CPU row on this runtime that the section quotes, when ok: on ONNX Runtime its
    ONNX-quantized row if it has one (what its last pass made), else its fp32 row; for a variant
    without either, its only row. A failed row gives None rather than a stand-in of another precision."""
    cpu = [r for r in rows if r.get("runtime") == runtime and r.get("device", "cpu") == "cpu"]
    onnx_quantized = [r for r in cpu if r.get("format") == "onnx" and str(r.get("precision", "")).startswith("int8-")]
    fp32 = [r for r in cpu if r.get("precision") == "fp32"]
    candidates = onnx_quantized or fp32 or (cpu if len(cpu) == 1 else [])
    ok = [r for r in candidates if r.get("status") == "ok"]
    return ok[0] if ok else None


def _size_ratio(row: dict[str, Any] | None, base: dict[str, Any] | None, key: str) -> float | None:
    mine, theirs = (row or {}).get(key), (base or {}).get(key)
    ok = isinstance(mine, (int, float)) and isinstance(theirs, (int, float)) and theirs > 0
    return mine / theirs if ok else None


def variant_passes(document: dict[str, Any]) -> list[VariantPasses]:
    """Every variant of the run except the baseline, in row order."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in _as_list(document.get("rows")):
        if isinstance(row, dict):
            by_variant.setdefault(str(row.get("variant")), []).append(row)
    baseline = str(document.get("baseline", "baseline"))
    base_onnx = _headline_row(by_variant.get(baseline, []), "onnxruntime")
    controls = kd_finetune_controls(by_variant)
    test_size = _as_dict(document.get("dataset")).get("test_size")
    test_images = test_size if isinstance(test_size, int) and test_size > 0 else None
    out = []
    for name, rows in by_variant.items():
        if name == baseline:
            continue
        # the row with the whole lineage (a chain's TFLite rows lack its ONNX quantization pass), ok
        # first: it carries every outcome (a skipped row lacks the quantization an ONNX artifact records)
        with_outcomes = [r for r in rows if isinstance(r.get("compression"), dict)]
        with_outcomes.sort(key=lambda r: (-len(_as_list(r.get("lineage"))), r.get("status") != "ok"))
        source = with_outcomes[0] if with_outcomes else rows[0]
        compression = _as_dict(source.get("compression"))
        paired = {}
        for runtime, _ in RUNTIME_COLUMNS:
            row = _headline_row(rows, runtime)
            speedup = _as_dict(_as_dict(row).get("speedup_paired")).get("speedup")
            paired[runtime] = float(speedup) if isinstance(speedup, (int, float)) else None
        ratio = compression.get("macs_ratio_to_baseline")
        onnx = _headline_row(rows, "onnxruntime")
        steps = describe_steps(_as_list(source.get("lineage")), compression, test_images)
        if name in controls and controls[name].step < len(steps):  # what the KD fine-tune bought over none
            steps[controls[name].step] += controls[name].sentence(test_images)
        out.append(VariantPasses(name, steps,
                                 float(ratio) if isinstance(ratio, (int, float)) else None, paired,
                                 _size_ratio(onnx, base_onnx, "size_bytes"), _size_ratio(onnx, base_onnx, "size_gzip_bytes")))
    return out


def _headings() -> list[str]:
    return (["variant", "passes, in order, and what each did", "ONNX size ×base", "ONNX gzip ×base", "MACs ×base"]
            + [f"paired × {label}" for _, label in RUNTIME_COLUMNS])


def _numbers(item: VariantPasses) -> list[str]:
    return ([fmt_times(item.onnx_size_ratio), fmt_times(item.onnx_gzip_ratio), fmt_times(item.macs_ratio)]
            + [fmt_times(item.paired[runtime]) for runtime, _ in RUNTIME_COLUMNS])


INTRO = ("Sizes are the variant's ONNX file against the baseline's (<1: smaller; gzip shows what unstructured "
         "zeros save). MACs ×base is the theory (multiply-accumulates against the baseline's); the paired columns "
         "are the measurement: the variant's fp32 row (on ONNX Runtime, an ONNX-quantized variant's int8 row) timed interleaved "
         "with the baseline on the same runtime (>1: faster).")


def markdown_section(document: dict[str, Any]) -> list[str]:
    """The section as GitHub Markdown lines (steps numbered, one per line of the cell); [] without variants."""
    items = variant_passes(document)
    if not items:
        return []

    out = ["## What each pass did", "", INTRO, "", "| " + " | ".join(_headings()) + " |",
           "|---|---|" + "--:|" * (len(_headings()) - 2)]
    for item in items:
        steps = "<br>".join(f"{i}. {md_cell(step)}" for i, step in enumerate(item.steps, 1)) or "-"
        out.append(f"| {md_cell(item.variant)} | {steps} | " + " | ".join(_numbers(item)) + " |")
    return out + [""]


def html_section(document: dict[str, Any]) -> str:
    """The section as an HTML table, every string escaped; "" without variants."""
    items = variant_passes(document)
    if not items:
        return ""
    head = "".join(f'<th{" class=t" if i < 2 else ""}>{escape(h)}</th>' for i, h in enumerate(_headings()))
    body = "".join(
        f'<tr><td class="t">{escape(item.variant)}</td><td class="t steps"><ol>'
        + "".join(f"<li>{escape(step)}</li>" for step in item.steps) + "</ol></td>"
        + "".join(f"<td>{escape(n)}</td>" for n in _numbers(item)) + "</tr>" for item in items)
    return (f"<h2>What each pass did</h2><p>{escape(INTRO)}</p>"
            f'<div class="wrap"><table class="passes"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
