"""The fine-tuning pass: recover accuracy after pruning, optionally distilling from the baseline."""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.context import PassContext
from compress.train import FitSettings


def finetune_pass(model: nn.Module, params: dict[str, Any], ctx: PassContext) -> tuple[nn.Module, dict[str, Any]]:
    """Train the current model for a few epochs; with distill=True the unpruned baseline is the teacher."""
    teacher = ctx.baseline if params["distill"] else None
    settings = FitSettings(epochs=params["epochs"], lr=params["lr"], seed=ctx.seed,
                           temperature=params["temperature"], alpha=params["alpha"])
    losses = ctx.fit(model, settings, teacher, "finetune" + (" (KD)" if teacher is not None else ""))
    info = {"epochs": params["epochs"], "lr": params["lr"], "distill": params["distill"], "losses": losses}
    if teacher is not None:
        info.update(temperature=params["temperature"], alpha=params["alpha"])
    return model.eval(), info
