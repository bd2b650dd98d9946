"""The notes a report shows above its table: what about the run, the machine or a row a reader must know
before trusting its numbers (a baseline that has not learned, a --quick run, a CPU without int8 dot
products, unaligned pruned widths, TFLite layout tax, reduced precision slower than its fp32, paired
timings taken on a busy machine)."""

from __future__ import annotations

from typing import Any

from bench.environment import int8_dot_product
from bench.results import row_name
from bench.stats import DISTURBED_P90_OVER_P10, paired_disturbed

VNNI_NOTE = "no VNNI: int8 kernels here are slower than on VNNI/AMX CPUs"
ARM_DOT_NOTE = "no int8 dot product (dotprod/i8mm): int8 kernels here are slower than on Arm CPUs that have it"
SLOWER_MARGIN = 1.1  # a reduced-precision row this much slower than its fp32 parent gets a note
CHANNEL_BLOCK = 8  # ONNX Runtime's NCHWc block with AVX2: pruned widths that are not multiples get padded
QUICK_NOTE = "--quick run: short timings for a smoke test, not publishable latencies"


def untrained_baseline_note(val_top1: Any, classes: int) -> str | None:
    """A note when the baseline scores at most twice chance on the validation split: it has not
    learned (a short run, too high a learning rate), so its variants' numbers compare noise."""
    if not isinstance(val_top1, (int, float)) or classes < 2 or val_top1 > 2 / classes:
        return None
    return (f"the baseline's validation top-1 ({val_top1:.1%}) is near chance ({1 / classes:.0%} for {classes} classes): "
            "it has not learned, so every accuracy and KD number compares noise; train it for more epochs, "
            "at a lower lr or on more data")


def run_notes(document: dict[str, Any]) -> list[str]:
    """Every note the report shows above its table, in order."""
    notes = []
    classes = (document.get("dataset") or {}).get("classes")
    if untrained := untrained_baseline_note((document.get("baseline_info") or {}).get("val_top1"),
                                            len(classes) if isinstance(classes, list) else 0):
        notes.append(untrained)
    if document.get("status") not in (None, "complete"):
        notes.append(f"run status is '{document.get('status')}': the table shows the rows finished so far")
    if (document.get("explanation_set") or {}).get("status") == "running":  # explain stopped before its end
        # `edgebench explain` works on finished runs only; a run that stopped in its own explain stage resumes
        finish = ("edgebench explain RUN_DIR" if document.get("status") in (None, "complete")
                  else "edgebench run --resume RUN_DIR")
        notes.append("the explanations were interrupted: rows explained before that show theirs, the rest show "
                     f"their previous ones or none, and the comparison grid is missing; finish them with: {finish}")
    if document.get("quick"):
        notes.append(QUICK_NOTE)
    cpu = (document.get("environment") or {}).get("cpu") or {}
    if int8_dot_product(cpu) is False:
        arm = any(f in (cpu.get("flags") or []) for f in ("asimd", "sve"))
        notes.append(ARM_DOT_NOTE if arm else VNNI_NOTE)
    return (notes + _alignment_notes(document) + _transpose_notes(document) + _slower_than_fp32_notes(document)
            + _disturbed_notes(document))


def _slower_than_fp32_notes(document: dict[str, Any]) -> list[str]:
    """Reduced-precision rows slower at batch 1 than the fp32 row they were made from.

    int8 pays only where the runtime's int8 kernels beat its fp32 ones on this CPU, layer by layer:
    without VNNI they often do not, and on AMX CPUs XNNPACK's int8 convs cost about the same per
    output pixel whatever their channels, so narrow layers on a large grid (a 1-channel stem, a
    heavily pruned model) were measured slower than fp32. The parent is the variant's own ok fp32
    row in the same format on the same runtime and device; a variant with no fp32 row at all (one
    that only quantizes the baseline's artifact) is compared with the baseline's. The comparison
    divides the two rows' paired speed-ups against the same baseline row at the same batch size and
    threads (free of the drift between rows), else their batch-1 p50s at the fewest threads both
    were timed at, seconds apart: hence the margin.
    """
    rows = document.get("rows") or []
    ok = [r for r in rows if r.get("status") == "ok"]
    def key(row: dict[str, Any], variant: Any) -> tuple[Any, ...]:
        return variant, row.get("format"), row.get("runtime"), row.get("device") or "cpu"
    fp32 = {key(r, r.get("variant")): r for r in ok if r.get("precision") == "fp32"}
    with_fp32 = {r.get("variant") for r in rows if r.get("precision") == "fp32"}
    slower = []
    for row in ok:
        if row.get("precision") == "fp32":
            continue
        # a failed fp32 row of its own means no parent: the baseline's is another model
        parent_variant = row.get("variant") if row.get("variant") in with_fp32 else document.get("baseline", "baseline")
        parent = fp32.get(key(row, parent_variant))
        speed = _speed_against(row, parent) if parent else None
        if speed is not None and speed[0] * SLOWER_MARGIN < 1:
            disturbed = any(paired_disturbed(r.get("speedup_paired")) for r in (row, parent)) and speed[1] != _P50S
            shown = speed[1] + ("; a timing the machine disturbed, see the note on them" if disturbed else "")
            slower.append(f"{row_name(row)} {speed[0]:.2f}× the speed of {row_name(parent)} ({shown})")
    if not slower:
        return []
    return [f"reduced precision slower than the fp32 it was made from (taking more than {SLOWER_MARGIN}× as long): "
            f"{', '.join(slower)}; it pays only where the runtime's kernels for it beat its fp32 ones on this CPU "
            f"(scripts/int8_probe.py times TFLite's int8 against fp32 per layer kind)"]


def _speed_against(row: dict[str, Any], parent: dict[str, Any]) -> tuple[float, str] | None:
    """How fast `row` is against `parent` (>1: faster) and how that was worked out, or None."""
    def paired(r: dict[str, Any]) -> dict[str, Any] | None:
        block = r.get("speedup_paired")
        ok = isinstance(block, dict) and isinstance(block.get("speedup"), (int, float)) and block["speedup"] > 0
        return block if ok and block.get("reference") else None
    mine, theirs = paired(row), paired(parent)
    setting = ("reference", "batch_size", "threads")
    if mine and theirs and all(mine.get(k) == theirs.get(k) for k in setting):
        return mine["speedup"] / theirs["speedup"], "ratio of their paired speed-ups"
    if mine and mine["reference"] == row_name(parent):  # the parent is the reference of the pairing itself
        return mine["speedup"], "timed paired with it"
    def batch1(r: dict[str, Any]) -> dict[Any, Any]:
        return {e.get("threads"): e.get("p50") for e in r.get("latency") or [] if e.get("batch_size") == 1}
    mine_p50, theirs_p50 = batch1(row), batch1(parent)
    common = sorted(t for t in mine_p50.keys() & theirs_p50.keys() if isinstance(t, int))
    p50, parent_p50 = (mine_p50[common[0]], theirs_p50[common[0]]) if common else (None, None)
    if all(isinstance(v, (int, float)) and v > 0 for v in (p50, parent_p50)):
        return parent_p50 / p50, _P50S
    return None


_P50S = "ratio of their p50s, timed minutes apart"


def _transpose_notes(document: dict[str, Any]) -> list[str]:
    """The layout tax of the TFLite graphs: TRANSPOSE operators counted in each converted file."""
    counts = {row_name(row): c["transposes"] for row in document.get("rows") or []
              if isinstance(c := row.get("compression"), dict) and isinstance(c.get("transposes"), int)}
    if not counts:
        return []
    taxed = {name: n for name, n in counts.items() if n}
    if not taxed:  # nothing to pay attention to (each row still records its count)
        return []
    listed = ", ".join(f"{name} {n}" for name, n in taxed.items())
    return [f"TFLite layout tax: TRANSPOSE operators (NCHW/NHWC conversions the converter could not fold) in "
            f"{len(taxed)} of {len(counts)} TFLite graphs: {listed}"]


def _alignment_notes(document: dict[str, Any]) -> list[str]:
    """Variants whose channel pruning left layer widths that CPU kernels pad, and how to avoid it.

    Why and what was measured: compress.prune.structured. Only x86 runs get the note, and only
    for the 8-channel blocks measured there.
    """
    flags = ((document.get("environment") or {}).get("cpu") or {}).get("flags") or []
    if not any(f.startswith("avx") for f in flags):
        return []
    notes, seen = [], set()
    for row in document.get("rows") or []:
        if row.get("variant") in seen:
            continue
        seen.add(row.get("variant"))
        for info in (row.get("compression") or {}).get("passes") or []:
            before, after = info.get("channels_before") or [], info.get("channels_after") or []
            if any(a != b and a % CHANNEL_BLOCK for b, a in zip(before, after)):
                notes.append(f"{row.get('variant')}: pruned layer widths {'-'.join(map(str, after))} are not all multiples of "
                             f"{CHANNEL_BLOCK}, which x86 CPU kernels pad, so latency may lag the MAC ratio "
                             f"(prune.structured(round_to={CHANNEL_BLOCK}) aligns them)")
    return notes


def _disturbed_notes(document: dict[str, Any]) -> list[str]:
    """Rows whose paired speed-up was timed while the machine was busy (bench.stats.paired_disturbed),
    with how many timings they got: the worker re-times a disturbed pair, runs before that did not."""
    shaky = []
    for row in document.get("rows") or []:
        paired = row.get("speedup_paired")
        if row.get("status") == "ok" and paired_disturbed(paired):
            low, high = paired["speedup_p10_p90"]
            attempts = paired.get("attempts")
            timings = f"{len(attempts)} timings" if isinstance(attempts, list) and len(attempts) > 1 else "timed once"
            shaky.append(f"{row_name(row)} ({_number(paired.get('speedup'))}× [{low:.2f}-{high:.2f}], {timings})")
    if not shaky:
        return []
    return [f"the machine was busy while these paired speed-ups were timed (the p90 of their rounds' ratios more than "
            f"{DISTURBED_P90_OVER_P10 - 1:.0%} above the p10, even in the steadiest timing kept): {', '.join(shaky)}; "
            f"re-time a pair with: edgebench ab RUN_DIR ROW_A ROW_B"]


def _number(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "?"
