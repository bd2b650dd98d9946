"""Knowledge distillation (Hinton et al., 2015) from the baseline teacher into a student.

For every student, the same student is also trained without the teacher, with the same budget
and seed, so the result can say how much of the teacher-student gap KD actually recovers.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from compress.context import PassContext
from compress.train import FitSettings


def gap_recovered(teacher: float, kd: float, scratch: float) -> float | None:
    """Share of the teacher-vs-scratch-student accuracy gap that KD closes (None without a gap).

    >>> round(gap_recovered(0.92, 0.90, 0.88), 2)
    0.5
    """
    gap = teacher - scratch
    return (kd - scratch) / gap if gap > 1e-9 else None


def distill_pass(model: nn.Module, params: dict[str, Any], ctx: PassContext) -> tuple[nn.Module, dict[str, Any]]:
    """width > 0: a fresh zoo student at that width; width == 0: distil into the current model."""
    if params["width"]:
        student, control = ctx.build_student(params["width"]), ctx.build_student(params["width"])
    else:
        student, control = model, copy.deepcopy(model)
    settings = FitSettings(epochs=params["epochs"], lr=params["lr"], temperature=params["temperature"],
                           alpha=params["alpha"], seed=ctx.seed)
    kd_losses = ctx.fit(student, settings, ctx.baseline, f"distill (T={params['temperature']:g})")
    ctx.fit(control, settings, None, "same student, no teacher")
    teacher_top1, kd_top1, scratch_top1 = ctx.evaluate(ctx.baseline), ctx.evaluate(student), ctx.evaluate(control)
    info = {
        "student_width": params["width"] or None, "temperature": params["temperature"], "alpha": params["alpha"],
        "epochs": params["epochs"], "kd_losses": kd_losses,
        "teacher_top1": teacher_top1, "student_kd_top1": kd_top1, "student_scratch_top1": scratch_top1,
        "gap_recovered": gap_recovered(teacher_top1, kd_top1, scratch_top1),
    }
    if ctx.evaluate_train is not None:
        # Why KD did or did not help: a student that fits its own training images far worse than the
        # teacher does lacks the capacity to follow the teacher, whatever the loss.
        info.update(teacher_train_top1=ctx.evaluate_train(ctx.baseline), student_kd_train_top1=ctx.evaluate_train(student),
                    student_scratch_train_top1=ctx.evaluate_train(control), train_fit_images=ctx.train_fit_images or None)
    return student.eval(), info
