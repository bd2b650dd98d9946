"""Rebuild a pruned or narrowed architecture from a state_dict alone.

Structured pruning and width changes only alter channel counts, so a copy of the original
model with each Conv2d / BatchNorm2d / Linear resized to the saved shapes is the pruned model.
This lets cached weights be plain state_dicts (loaded with weights_only=True), never pickles.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def _resized(module: nn.Module, state: dict[str, torch.Tensor], prefix: str) -> nn.Module | None:
    weight = state.get(f"{prefix}weight")
    if isinstance(module, nn.Conv2d) and weight is not None and weight.shape != module.weight.shape:
        depthwise = module.groups > 1 and module.groups == module.in_channels == module.out_channels
        out_ch = weight.shape[0]
        groups = out_ch if depthwise else module.groups
        return nn.Conv2d(weight.shape[1] * groups, out_ch, module.kernel_size, module.stride, module.padding,
                         module.dilation, groups, module.bias is not None, module.padding_mode)
    if isinstance(module, nn.BatchNorm2d) and weight is not None and weight.shape[0] != module.num_features:
        return nn.BatchNorm2d(weight.shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
    if isinstance(module, nn.Linear) and weight is not None and weight.shape != module.weight.shape:
        return nn.Linear(weight.shape[1], weight.shape[0], module.bias is not None)
    return None


def fit_to_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` whose layers have the shapes in `state`, with `state` loaded (strict)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if not name:
            continue
        replacement = _resized(module, state, f"{name}.")
        if replacement is not None:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, replacement)
    model.load_state_dict(state, strict=True)
    return model.eval()
