"""Knowledge distillation (Hinton et al., 2015) from the baseline teacher into a student.

For every student, the same student is also trained without the teacher, with the same budget
and seed, so the result can say how much of the teacher-student gap KD actually recovers.

With init='teacher' the student does not start from random weights but from the teacher pruned
to the student's widths (the channels of largest L2 norm, through Torch-Pruning's dependency
graph): the teacher then passes on its weights as well as its soft targets, as DistilBERT does
for layers. The share of the gap is still measured against the random-init student trained
without a teacher; a second control, the teacher-initialised student trained without the KD
loss, tells how much of that share the initialisation alone brings.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from compress.context import PassContext, PassNotApplicable
from compress.prune import prunable_channels, prune_to_channels
from compress.registry import student_model
from compress.train import FitSettings


def gap_recovered(teacher: float, kd: float, scratch: float) -> float | None:
    """Share of the teacher-vs-scratch-student accuracy gap that KD closes (None without a gap).

    >>> round(gap_recovered(0.92, 0.90, 0.88), 2)
    0.5
    """
    gap = teacher - scratch
    return (kd - scratch) / gap if gap > 1e-9 else None


def teacher_initialised(student: nn.Module, teacher: nn.Module, example_inputs: torch.Tensor) -> nn.Module:
    """`student` with the teacher's weights: the teacher pruned (L2 importance) to the student's channel counts.

    Raises PassNotApplicable when the student is not the teacher's architecture with fewer channels.
    """
    pruned = prune_to_channels(copy.deepcopy(teacher), prunable_channels(student, example_inputs), example_inputs)
    try:
        student.load_state_dict(pruned.state_dict())
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise PassNotApplicable(f"init='teacher' needs a student that is the teacher with fewer channels: {first}") from None
    return student


def distill_pass(model: nn.Module, params: dict[str, Any], ctx: PassContext) -> tuple[nn.Module, dict[str, Any]]:
    """width > 0: a fresh zoo student at that width; width == 0: distil into the current model."""
    # width == 0 trains a copy: `model` must stay as it came, the no-teacher control's starting point
    zoo_student = student_model(params)
    student = ctx.build_student(params["width"], zoo_student) if params["width"] else copy.deepcopy(model)
    settings = FitSettings(epochs=params["epochs"], lr=params["lr"], temperature=params["temperature"],
                           alpha=params["alpha"], seed=ctx.seed)
    info: dict[str, Any] = {"student_width": params["width"] or None, "student_model": zoo_student or None,
                            "init": params["init"]}
    init_only = None
    if params["init"] == "teacher":
        student = teacher_initialised(student, ctx.baseline, ctx.example_inputs)
        init_only = copy.deepcopy(student)
        info["init_top1"] = ctx.evaluate(student)  # before any training: the pruned teacher as it is
    kd_losses = ctx.fit(student, settings, ctx.baseline, f"distill (T={params['temperature']:g})")
    scratch = _no_teacher_control(model, params, settings, ctx)
    teacher_top1, kd_top1 = ctx.evaluate(ctx.baseline), ctx.evaluate(student)
    info.update({
        "temperature": params["temperature"], "alpha": params["alpha"], "epochs": params["epochs"], "kd_losses": kd_losses,
        "teacher_top1": teacher_top1, "student_kd_top1": kd_top1, "student_scratch_top1": scratch["top1"],
        "gap_recovered": gap_recovered(teacher_top1, kd_top1, scratch["top1"]),
    })
    if init_only is not None:
        ctx.fit(init_only, settings, None, "teacher init, no KD loss")
        info["student_init_only_top1"] = ctx.evaluate(init_only)
        # what the soft targets add on top of the teacher's weights: the share of the gap left by the
        # teacher-initialised student without the KD loss that the KD student closes
        info["gap_recovered_by_kd_loss"] = gap_recovered(teacher_top1, kd_top1, info["student_init_only_top1"])
    if ctx.evaluate_train is not None:
        # Why KD did or did not help: a student that fits its own training images far worse than the
        # teacher does lacks the capacity to follow the teacher, whatever the loss.
        info.update(teacher_train_top1=ctx.evaluate_train(ctx.baseline), student_kd_train_top1=ctx.evaluate_train(student),
                    student_scratch_train_top1=scratch["train_top1"], train_fit_images=ctx.train_fit_images or None)
    return student.eval(), info


def _no_teacher_control(model: nn.Module, params: dict[str, Any], settings: FitSettings, ctx: PassContext) -> dict[str, Any]:
    """Top-1 (test, and training fit) of the student trained the same way without a teacher.

    A zoo student's control depends only on its model, width, epochs, learning rate and seed (not
    on the KD settings or init), so students that share them share one trained control per run.
    """
    key = ("no-teacher control", params["student"], params["width"], params["epochs"], params["lr"], ctx.seed)
    control = ctx.memo.get(key) if params["width"] else None
    if control is None:
        control = ctx.build_student(params["width"], student_model(params)) if params["width"] else copy.deepcopy(model)
        ctx.fit(control, settings, None, "same student, no teacher")
        if params["width"]:
            ctx.memo[key] = control
    return {"top1": ctx.evaluate(control),
            "train_top1": ctx.evaluate_train(control) if ctx.evaluate_train is not None else None}
