"""The table of compression passes: one entry per pass, with typed parameters and defaults.

The table is plain data, so importing it is cheap: implementations are named as
"module:function" and imported only when a pass runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Param:
    """One parameter of a pass: its type, default and the values it accepts."""

    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    def validate(self, value: Any) -> str | None:
        """Return an error message for a bad value, or None."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                return "must be a finite number, got an integer too large for a float"
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            return f"expected {self.type.__name__}, got {type(value).__name__} {value!r}"
        if self.type is float and not math.isfinite(value):
            return f"must be a finite number, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{value!r} is not one of {list(self.choices)}"
        return self.check(value) if self.check else None


@dataclass(frozen=True)
class PassSpec:
    """A registered pass. kind 'model' returns an nn.Module; kind 'onnx' rewrites an ONNX artifact."""

    name: str
    kind: str
    impl: str
    help: str
    params: dict[str, Param] = field(default_factory=dict)
    formats: tuple[str, ...] = ("torch", "onnx", "tflite")
    # checks that span parameters: all filled-in params -> an error message, or None
    check: Callable[[dict[str, Any]], str | None] | None = None


def _fraction(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _width(v: float) -> str | None:
    return None if 0 <= v <= 4 else "must be in [0, 4] (a student is the baseline at a fraction of its width, or a few times it)"


def _at_least_one(v: int) -> str | None:
    return None if v >= 1 else "must be >= 1"


def _unit(v: float) -> str | None:
    return None if 0 <= v <= 1 else "must be in [0, 1]"


def student_model(params: dict[str, Any]) -> str:
    """The zoo model to build the student from; "" for the baseline's own architecture."""
    return "" if params["student"] == "baseline" else params["student"]


def _check_structured(params: dict[str, Any]) -> str | None:
    if params["steps"] == 1 and params["recover_epochs"] != 1:
        return "recover_epochs is the fine-tune between iterative steps: it needs steps > 1"
    return None


def _check_distill(params: dict[str, Any]) -> str | None:
    if params["init"] == "teacher" and not params["width"]:
        return "init='teacher' needs a student width > 0 (width=0 distils into the current model, which keeps its weights)"
    if student_model(params) and not params["width"]:
        return f"student={params['student']!r} needs a width > 0 (width=0 distils into the current model)"
    if params["init"] == "teacher" and params["width"] > 1:
        return "init='teacher' needs a width <= 1: the student starts from the teacher's channels, and it has no more"
    if params["init"] == "teacher" and student_model(params):
        return "init='teacher' starts from the teacher's own channels: leave student at 'baseline' (the teacher's architecture)"
    return None


_FINETUNE_PARAMS = {
    "epochs": Param(int, 1, "fine-tuning epochs on the training split", check=_non_negative),
    "lr": Param(float, 0.02, "peak learning rate of the one-cycle schedule", check=_positive),
}

PASSES: dict[str, PassSpec] = {
    spec.name: spec
    for spec in [
        PassSpec(
            "prune.unstructured", "model", "compress.prune:unstructured",
            "magnitude pruning of conv/linear weights, made permanent; zeros shrink the compressed file, not dense latency",
            {
                "sparsity": Param(float, 0.5, "share of weights set to zero", check=_fraction),
                "scope": Param(str, "global", "rank weights across all layers or within each layer", choices=("global", "layer")),
            },
        ),
        PassSpec(
            "prune.structured", "model", "compress.prune:structured",
            "channel pruning with Torch-Pruning's dependency graph; the model becomes physically smaller",
            {
                "ratio": Param(float, 0.5, "share of channels removed from each prunable layer", check=_fraction),
                "importance": Param(str, "l2", "channel importance criterion", choices=("l1", "l2", "taylor")),
                "steps": Param(int, 1, "iterative pruning steps (a recovery fine-tune between steps when > 1)", check=_at_least_one),
                "recover_epochs": Param(int, 1, "epochs of the recovery fine-tune between iterative steps (lr 0.02)", check=_non_negative),
                "round_to": Param(int, 1, "keep a multiple of this many channels per layer, nearest to the ratio (8 suits AVX2 CPU kernels; 1 = exact ratio)",
                                  check=_at_least_one),
            },
            check=_check_structured,
        ),
        PassSpec(
            "finetune", "model", "compress.finetune:finetune_pass",
            "fine-tune the current model on the training split; distill=true adds KD from the model before the chain",
            {**_FINETUNE_PARAMS, "distill": Param(bool, False, "use the unpruned baseline as a KD teacher"),
             "temperature": Param(float, 4.0, "softmax temperature of the KD loss (with distill=true)", check=_positive),
             "alpha": Param(float, 0.9, "weight of the KD term (with distill=true)", check=_unit)},
        ),
        PassSpec(
            "distill", "model", "compress.distill:distill_pass",
            "Hinton knowledge distillation from the baseline into a zoo student (or into the current model when width=0)",
            {
                "width": Param(float, 0.5, "student width multiplier (relative to the baseline's width); 0 distils into the current model", check=_width),
                "student": Param(str, "baseline", "the student's model: 'baseline' = the baseline's architecture, else a zoo "
                                                  "model (edgebench list) or 'module:factory'"),
                "epochs": Param(int, 3, "student training epochs", check=_non_negative),
                "lr": Param(float, 0.1, "peak learning rate", check=_positive),
                "temperature": Param(float, 4.0, "softmax temperature of the KD loss", check=_positive),
                "alpha": Param(float, 0.9, "weight of the KD term (1 - alpha weights the hard-label loss)", check=_unit),
                "init": Param(str, "random", "student's starting weights: 'random' (Hinton KD), or 'teacher': the teacher pruned "
                                             "to the student's widths (channels of largest L2 norm)", choices=("random", "teacher")),
            },
            check=_check_distill,
        ),
        PassSpec(
            "quantize.dynamic", "onnx", "compress.quantize_onnx:quantize_dynamic",
            "ONNX Runtime dynamic quantization: int8 weights, activations quantized at run time",
            {"per_channel": Param(bool, False, "per-channel weight scales")},
            formats=("onnx",),
        ),
        PassSpec(
            "quantize.static", "onnx", "compress.quantize_onnx:quantize_static",
            "ONNX Runtime static QDQ quantization after quant_pre_process, calibrated on training images",
            {
                "calibration": Param(str, "minmax", "calibration method", choices=("minmax", "entropy", "percentile")),
                "per_channel": Param(bool, True, "per-channel weight scales"),
                "images": Param(int, 256, "calibration images from the training split", check=_at_least_one),
                "activations": Param(str, "uint8", "activation type: uint8 (U8S8, ORT's fast path on x86) or int8 (S8S8)", choices=("uint8", "int8")),
                # Measured on the default baseline (AVX2, no VNNI): off 92.28% top-1, on 92.99% (= fp32).
                "reduce_range": Param(bool, True, "7-bit weights: avoids the int16 saturation of U8S8 kernels on CPUs without VNNI"),
                # ORT per-op profile of the default baseline: the 1-input-channel QLinearConv takes 62 us
                # vs 20 us for the fp32 Conv. Keeping the stem fp32 only pays once its max-pool stays fp32
                # too (see compress.quantize_onnx.keep_stem_fp32); measured numbers in the README.
                "fp32_stem": Param(bool, True, "keep the stem (first conv, its activation and max-pool) in fp32; int8 starts after it"),
            },
            formats=("onnx",),
        ),
    ]
}


def resolve(spec: PassSpec) -> Callable[..., Any]:
    """Import a pass implementation on first use (keeps `import compress.registry` cheap)."""
    import importlib

    module_name, func_name = spec.impl.split(":")
    return getattr(importlib.import_module(module_name), func_name)
