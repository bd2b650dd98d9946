"""What KD added, for the report's "What each pass did": each variant whose chain has
finetune(distill=true) against the variant the config makes by the same passes without KD, when
there is one, on a runtime both have an ok fp32 row on (read from results.json rows only); and the
cautions for KD figures too small to tell from the noise of the run's test images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.stats import two_standard_errors


@dataclass
class KdControl:
    control: str      # the variant made by the same passes, its fine-tune without KD
    where: str        # the runtime both top-1 figures come from (the same format, runtime and device)
    control_top1: float
    kd_top1: float
    step: int         # position of the KD fine-tune in the variant's lineage

    def sentence(self, eval_images: int | None = None) -> str:
        noise = difference_within_noise(self.kd_top1, self.control_top1, eval_images)
        return (f"; the same passes fine-tuned without KD ({self.control}): fp32 top-1 {100 * self.control_top1:.2f}%, "
                f"with KD {100 * self.kd_top1:.2f}% (on {self.where}{f'; {noise}' if noise else ''})")


def all_numbers(*values: Any) -> bool:
    """Whether every value is a number (a hand-edited results.json may hold anything)."""
    return all(isinstance(v, (int, float)) for v in values)


def gap_within_noise(teacher: Any, scratch: Any, images: int | None) -> str:
    """A caution when the teacher-student gap is within 2 standard errors of the two top-1s on
    `images` evaluation images: a share of a gap that small (say a teacher at chance level after a
    short run) says nothing about KD. Empty when the gap is clear or a number is missing.

    >>> gap_within_noise(0.094, 0.088, 500)
    'a gap of 0.60 pt is within the noise of 500 test images, ±3.6 pt, so this share means little'
    """
    if not (all_numbers(teacher, scratch) and images):
        return ""
    two_se = two_standard_errors(teacher, scratch, images)
    if teacher - scratch >= two_se:
        return ""
    return (f"a gap of {100 * (teacher - scratch):.2f} pt is within the noise of {images:,} test images, "
            f"±{100 * two_se:.1f} pt, so this share means little")


def difference_within_noise(with_kd: Any, without: Any, images: int | None) -> str:
    """A caution when what KD changed (its student's top-1 against the same student trained without
    it) is within 2 standard errors of the two top-1s: then it cannot be told from no change, and
    neither can a share of the gap built on it. (Unpaired errors: two models scored on the same
    images are correlated, so this errs towards calling a difference noise.) Empty when the difference is clear or a number is missing.

    >>> difference_within_noise(0.9141, 0.9134, 10_000)
    'within the noise of 10,000 test images, ±0.8 pt (two standard errors)'
    """
    if not (all_numbers(with_kd, without) and images):
        return ""
    if abs(with_kd - without) >= (two_se := two_standard_errors(with_kd, without, images)):
        return ""
    return f"within the noise of {images:,} test images, ±{100 * two_se:.1f} pt (two standard errors)"


def _fp32_top1s(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    """Top-1 of each ok fp32 row of a variant, by (format, runtime, device), in row order (torch first)."""
    out: dict[tuple[str, str, str], float] = {}
    for row in rows:
        accuracy = row.get("accuracy")
        top1 = accuracy.get("top1") if isinstance(accuracy, dict) else None
        if row.get("status") == "ok" and row.get("precision") == "fp32" and isinstance(top1, (int, float)):
            out.setdefault((str(row.get("format")), str(row.get("runtime")), str(row.get("device", "cpu"))), float(top1))
    return out


def _model_lineage(rows: list[dict[str, Any]]) -> list[str]:
    """The passes that made a variant's model (its fp32 rows' lineage: no ONNX quantization pass)."""
    for row in rows:
        if row.get("precision") == "fp32" and isinstance(row.get("lineage"), list):
            return [str(entry) for entry in row["lineage"]]
    return []


def _without_kd(entry: str) -> tuple[str, bool] | None:
    """A finetune lineage entry as (the entry minus its KD settings, whether it used KD); None for other passes."""
    from compress.chain import PassSyntaxError, parse_pass

    try:
        call = parse_pass(entry)
    except PassSyntaxError:  # written by another edgebench: no comparison rather than a wrong one
        return None
    if call.spec.name != "finetune":
        return None
    params = dict(call.params)
    uses_kd = bool(params.pop("distill", False))
    params.pop("temperature", None), params.pop("alpha", None)
    return repr(sorted(params.items())), uses_kd


def _signature(lineage: list[str]) -> tuple[tuple[str, ...], int | None] | None:
    """The lineage with each fine-tune's KD settings left out, and the position of its KD fine-tune (None without one)."""
    parts, kd_step = [], None
    for i, entry in enumerate(lineage):
        plain = _without_kd(entry)
        parts.append(plain[0] if plain else entry)
        if plain and plain[1] and kd_step is None:
            kd_step = i
    return (tuple(parts), kd_step) if parts else None


def kd_finetune_controls(by_variant: dict[str, list[dict[str, Any]]]) -> dict[str, KdControl]:
    """variant fine-tuned with KD -> its comparison with the variant made by the same passes with that
    fine-tune without KD, when the config has one and both have an ok fp32 row on the same runtime:
    the control that says what finetune(distill=true) added."""
    signatures = {name: _signature(_model_lineage(rows)) for name, rows in by_variant.items()}
    top1s = {name: _fp32_top1s(rows) for name, rows in by_variant.items()}
    out = {}
    for name, sig in signatures.items():
        if not sig or sig[1] is None:
            continue
        mine = top1s[name]
        for control, other in signatures.items():
            if other != (sig[0], None):
                continue
            theirs = top1s[control]
            cell = next((cell for cell in mine if cell in theirs), None)
            if cell is not None:  # a control without a comparable ok row says nothing: try the next one
                out[name] = KdControl(control, cell[1], theirs[cell], mine[cell], sig[1])
                break
    return out
