"""The one training loop every pass uses: plain training, fine-tuning and knowledge distillation.

Data arrives as a callable `epoch -> iterable of (inputs, labels)` tensors, so this module knows
nothing about datasets, files or augmentation (the caller owns those).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

# epoch -> (images, labels) batches, or (images, labels, teacher logits) for a KD fit
EpochBatches = Callable[[int], Iterable[tuple[torch.Tensor, ...]]]


@dataclass(frozen=True)
class FitSettings:
    epochs: int
    lr: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    temperature: float = 4.0  # used only with a teacher
    alpha: float = 0.9        # weight of the KD term, used only with a teacher
    seed: int = 0


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hinton et al. (2015): alpha * T^2 * KL(soft teacher || soft student) + (1 - alpha) * CE."""
    soft = F.kl_div(F.log_softmax(student_logits / temperature, dim=1),
                    F.log_softmax(teacher_logits / temperature, dim=1), reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    return alpha * temperature**2 * soft + (1 - alpha) * hard


def fit(model: nn.Module, batches: EpochBatches, steps_per_epoch: int, settings: FitSettings, *,
        teacher: nn.Module | None = None, progress: Callable[[int, float], None] | None = None,
        keep_mask: bool = True, autocast: torch.dtype | None = None) -> list[float]:
    """Train in place with SGD (Nesterov) and a one-cycle schedule; returns the mean loss per epoch.

    With a teacher the loss is `kd_loss`. A batch may carry the teacher's logits as a third element
    (precomputed once by the caller); they are then used instead of running the teacher, which
    halves the cost of a small student's KD step. Weights that are exactly zero before training stay zero
    when keep_mask is set, so fine-tuning after unstructured pruning keeps the sparsity.
    `progress(step, loss)` is called after every step (the caller draws the progress bar).
    `autocast` (e.g. torch.bfloat16) runs the forward passes under CPU autocast: the weights, their
    updates and the loss stay fp32, only the layers' arithmetic is in the lower precision.
    """
    if settings.epochs == 0 or steps_per_epoch == 0:
        return []
    torch.manual_seed(settings.seed)
    masks = {p: (p != 0) for p in model.parameters() if p.dim() > 1} if keep_mask else {}
    masks = {p: m for p, m in masks.items() if not bool(m.all())}
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": settings.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr, momentum=0.9, nesterov=True)
    schedule = _one_cycle(optimizer, settings.lr, settings.epochs * steps_per_epoch)
    if teacher is not None:
        teacher.eval()
    # the forward passes (student and, when it runs, teacher) in the requested arithmetic
    forward_precision = functools.partial(torch.autocast, "cpu", dtype=autocast, enabled=autocast is not None)
    losses: list[float] = []
    step = 0
    for epoch in range(settings.epochs):
        model.train()
        total, count = 0.0, 0
        for i, (x, y, *precomputed) in enumerate(batches(epoch)):
            if i >= steps_per_epoch:
                break
            with forward_precision():
                logits = model(x).float()
            if teacher is None:
                loss = F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
            else:
                if precomputed:
                    teacher_logits = precomputed[0]
                else:
                    with torch.no_grad(), forward_precision():
                        teacher_logits = teacher(x).float()
                loss = kd_loss(logits, teacher_logits, y, settings.temperature, settings.alpha, settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if masks:
                with torch.no_grad():
                    for p, m in masks.items():
                        p.mul_(m)
            total += float(loss.detach()) * len(y)
            count += len(y)
            step += 1
            if progress:
                progress(step, float(loss.detach()))
        losses.append(total / max(count, 1))
    model.eval()
    return losses


def _one_cycle(optimizer: torch.optim.Optimizer, lr: float, total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """One-cycle (warm-up a quarter, then anneal): good accuracy in few epochs. Tiny runs in tests
    have too few steps for its phases, so they get a constant rate instead."""
    if total_steps < 8:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.25)
