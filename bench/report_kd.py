"""What a KD fine-tune added: each variant whose chain has finetune(distill=true) against the variant
the config makes by the same passes without KD, when there is one, on a runtime both have an ok
fp32 row on. Read from results.json rows only; used by the report's "What each pass did"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class KdControl:
    control: str      # the variant made by the same passes, its fine-tune without KD
    where: str        # the runtime both top-1 figures come from (the same format, runtime and device)
    control_top1: float
    kd_top1: float
    step: int         # position of the KD fine-tune in the variant's lineage

    def sentence(self) -> str:
        return (f"; the same passes fine-tuned without KD ({self.control}): fp32 top-1 {100 * self.control_top1:.2f}%, "
                f"with KD {100 * self.kd_top1:.2f}% (on {self.where})")


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
