"""Whether a measured row's outputs can be trusted, judged against the torch model it was exported from."""

from __future__ import annotations

import numpy as np

from bench.config import Config
from bench.results import Row


def parity_tolerance(tolerance: float, reference: np.ndarray) -> float:
    """The fp32 parity tolerance for these reference logits: as configured up to |logit| 100, then
    growing with the largest |logit|, since float32 rounding grows with the values (a diverged model's
    logits in the thousands differ by 1e-3 between two correct exports)."""
    finite = np.abs(reference[np.isfinite(reference)])
    return tolerance * max(1.0, float(finite.max()) / 100 if finite.size else 1.0)


def validate_row(row: Row, reference: np.ndarray, labels: np.ndarray, cfg: Config) -> None:
    """Fail a measured row whose outputs cannot be trusted: NaN/inf outputs, an fp32 artifact beyond
    the parity tolerance of its torch source, or a reduced-precision one that disagrees with its fp32
    parent or loses more top-1 than the config allows (its status and reason say which)."""
    parity = row.parity or {}
    if row.accuracy and row.accuracy.get("nonfinite"):
        row.fail("validation_failed", f"{row.accuracy['nonfinite']} outputs are NaN/inf")
    elif row.precision == "fp32":
        tolerance = parity.get("tolerance", cfg.export.parity_tolerance)
        if not parity["max_abs_diff"] <= tolerance:  # NaN (a NaN reference) fails too
            row.fail("validation_failed", f"max abs logit difference {parity['max_abs_diff']:.3g} vs torch exceeds "
                                          f"{tolerance:g} (on {parity.get('n', '?')} parity images)")
    elif not np.isfinite(reference).all():  # argmax of NaN logits is class 0: any constant output would "agree"
        row.fail("validation_failed", "its fp32 parent's outputs hold NaN/inf, so there is nothing to validate it against")
    else:  # reduced precision: judged by agreement with the fp32 parent and by accuracy lost
        parent_top1 = float((reference.argmax(1) == labels).mean())
        drop = parent_top1 - row.accuracy["top1"]
        parity["top1_drop_vs_parent"] = drop
        if parity["top1_agreement"] < cfg.export.quantized_min_agreement:
            row.fail("validation_failed", f"top-1 agreement with the fp32 parent {parity['top1_agreement']:.4f} is below "
                                          f"{cfg.export.quantized_min_agreement} (on {parity.get('n', '?')} parity images)")
        elif drop > cfg.export.quantized_max_top1_drop:
            row.fail("validation_failed", f"top-1 drop vs the fp32 parent {drop * 100:.2f} pt exceeds {cfg.export.quantized_max_top1_drop * 100:.2f} pt")
