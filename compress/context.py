"""What a model pass may use besides the model: training, a teacher, example inputs.

The caller (bench) fills this in; passes never touch datasets or files directly, which keeps
`compress` a leaf that can be tested on random tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from compress.train import FitSettings


class PassNotApplicable(ValueError):
    """A pass cannot apply to this model as configured (e.g. init='teacher' with a student wider than
    its teacher): a configuration error, reported in one line. Any other exception a pass raises
    is a failure of that variant only (its rows say export_failed and why)."""


@dataclass
class PassContext:
    # fit(model, settings, teacher, description) trains in place and returns per-epoch losses
    fit: Callable[[nn.Module, FitSettings, nn.Module | None, str], list[float]]
    # the uncompressed baseline: KD teacher and reference for ratios
    baseline: nn.Module
    # build_student(width, model) -> a fresh, untrained zoo model at that width: the baseline's
    # architecture when model is "", else the named zoo model (or module:factory)
    build_student: Callable[[float, str], nn.Module]
    # a small batch of real, normalised inputs (N, C, H, W): tracing and Taylor importance in pruning
    example_inputs: torch.Tensor
    example_labels: torch.Tensor
    # evaluate(model) -> top-1 on the evaluation set, for reporting (never used to pick weights)
    evaluate: Callable[[nn.Module], float]
    seed: int = 0
    # evaluate_train(model) -> top-1 on (a fixed slice of) the training split: how well a model fits
    # what it was trained on, e.g. whether a KD student has the capacity to follow its teacher
    evaluate_train: Callable[[nn.Module], float] | None = None
    train_fit_images: int = 0  # how many training images evaluate_train looks at (for the record)
    # results passes of one run can share, e.g. a distillation's no-teacher control (see compress.distill)
    memo: dict[Any, Any] = field(default_factory=dict)
