"""Pruning passes: unstructured magnitude pruning and structured channel pruning (Torch-Pruning).

What a ratio means here (after Torch-Pruning's definitions): `sparsity` is the share of
conv/linear weights set to zero; `ratio` is the share of output channels removed from each
prunable layer, which removes about 1 - (1 - ratio)^2 of a middle conv's parameters and MACs.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as torch_prune
from torch import nn

from compress.context import PassContext, PassNotApplicable
from compress.train import FitSettings

log = logging.getLogger("edgebench")


def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def weight_sparsity(model: nn.Module) -> float:
    """Share of exactly-zero weights over all conv and linear weight tensors."""
    weights = [m.weight for m, _ in _prunable(model)]
    total = sum(w.numel() for w in weights)
    return sum(int((w == 0).sum()) for w in weights) / max(total, 1)


def unstructured(model: nn.Module, params: dict[str, Any], ctx: PassContext | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Zero the smallest-magnitude weights, globally or per layer, and make the zeros permanent.

    Dense kernels still multiply the zeros, so expect no speed-up; the gain is in the
    compressed size of the artifact. Fine-tuning afterwards (finetune pass) keeps the zeros.
    """
    targets = _prunable(model)
    if params["scope"] == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=params["sparsity"])
    else:
        for module, name in targets:
            torch_prune.l1_unstructured(module, name, amount=params["sparsity"])
    for module, name in targets:
        torch_prune.remove(module, name)  # fold weight_orig * mask into a plain weight tensor
    return model.eval(), {"sparsity_requested": params["sparsity"], "sparsity_reached": weight_sparsity(model),
                          "scope": params["scope"]}


def _classifier(model: nn.Module, example_inputs: torch.Tensor) -> list[nn.Module]:
    """The conv or linear layer that runs last in a forward pass: its outputs are the classes, so it
    must keep them all. Found by running the model, not by registration order: a model may define
    its head before its features."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda module, _inputs, _output: order.append(module))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(example_inputs[:1])
    finally:
        for hook in hooks:
            hook.remove()
    return order[-1:]


def _check_outputs_kept(model: nn.Module, example_inputs: torch.Tensor, before: torch.Size) -> None:
    """ValueError when pruning changed the model's output shape (a class output was removed)."""
    after = _output_shape(model, example_inputs)
    if after != before:
        raise ValueError(f"pruning changed the model's output shape from {tuple(before)} to {tuple(after)}; "
                         "the layer producing the classes must not be pruned")


def _output_shape(model: nn.Module, example_inputs: torch.Tensor) -> torch.Size:
    with torch.no_grad():
        return model.eval()(example_inputs[:1]).shape


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "taylor":
        return tp.importance.GroupTaylorImportance()
    return tp.importance.GroupMagnitudeImportance(p=1 if name == "l1" else 2)


def _channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def rounded_keep(channels: int, ratio: float, multiple: int) -> int:
    """Channels a layer keeps under `ratio` when kept counts must be a multiple of `multiple`.

    The multiple nearest to channels * (1 - ratio), ties going down (the smaller, faster layer),
    at least one multiple, never more than the layer has; ratio 0 prunes nothing. So a layer
    can lose more (or fewer) channels than the ratio says; the row's channels_after says how
    many it kept. Without a multiple (1): channels * (1 - ratio) rounded down, but at least one,
    after rounding away float error (80 * (1 - 0.9) is 7.999999999999998: 8 channels, not 7).
    Why not Torch-Pruning's own rules: where its count rounds down to 0 it silently keeps every
    channel (24 channels at ratio 0.7 with its round_to=8 stayed 24; 8 channels at ratio 0.9
    stayed 8 while 16 kept 1, so higher ratios pruned less).
    """
    if ratio <= 0:
        return channels
    if multiple <= 1:
        return max(1, int(round(channels * (1 - ratio), 9)))
    # round(..., 9): 40 * (1 - 0.7) is 12.000000000000002 in floats, which must stay a tie (1.5 multiples)
    nearest = math.ceil(round(channels * (1 - ratio) / multiple, 9) - 0.5)
    return min(channels, multiple * max(1, nearest))


def _aligned_ratios(model: nn.Module, ratio: float, multiple: int, ignored: list[nn.Module]) -> dict[nn.Module, float]:
    """Per-layer ratios that make Torch-Pruning keep `rounded_keep` channels in each Conv2d and Linear layer.

    Other layer kinds (ConvTranspose, Conv1d) and grouped convs other than depthwise are not
    aligned; none is in the zoo, and the row's channels_after shows what they kept.
    """
    return {layer: _ratio_keeping(_outputs(layer), rounded_keep(_outputs(layer), ratio, multiple))
            for layer in _pruned_layers(model, ignored)}


def _ratio_keeping(channels: int, keep: int) -> float:
    """The pruning ratio under which Torch-Pruning keeps `keep` of `channels`."""
    # + 0.5: Torch-Pruning keeps int(channels * (1 - ratio)), which float error could floor one short
    return max(0.0, 1 - (keep + 0.5) / channels)


def structured(model: nn.Module, params: dict[str, Any], ctx: PassContext) -> tuple[nn.Module, dict[str, Any]]:
    """Remove whole channels with Torch-Pruning's dependency graph (residuals and concats stay consistent).

    With steps > 1 the ratio is reached gradually, with a recovery fine-tune of recover_epochs between
    steps (the final fine-tune is a separate `finetune` pass in the chain).

    Every pruned layer keeps at least one channel, and with round_to > 1 a multiple of round_to
    channels (see `rounded_keep`). Why: CPU kernels work on blocks of channels (ONNX Runtime's NCHWc blocks
    are 8 wide with AVX2) and pad or re-layout a layer that is not a multiple. Measured here on
    the default baseline in ORT (paired timing in the default run): the 25% model with
    18-36-36-48 channels (0.57x the MACs) ran 1.02x as fast as the baseline; aligned to
    16-32-32-48 (0.46x the MACs) 1.97x.
    """
    before = _channels(model)
    output_shape = _output_shape(model, ctx.example_inputs)
    ignored = _classifier(model, ctx.example_inputs)
    # per-layer ratios always, not Torch-Pruning's global one: see rounded_keep for what its own rule does
    per_layer = _aligned_ratios(model, params["ratio"], params["round_to"], ignored)
    pruner = _pruner(model, ctx.example_inputs[:1], importance=_importance(params["importance"]),
                     pruning_ratio=params["ratio"], pruning_ratio_dict=per_layer,
                     iterative_steps=params["steps"], ignored_layers=ignored)
    for step in range(params["steps"]):
        if params["importance"] == "taylor":  # Taylor importance needs gradients of a real loss
            model.zero_grad()
            F.cross_entropy(model(ctx.example_inputs), ctx.example_labels).backward()
        pruner.step()
        model.zero_grad(set_to_none=True)
        _check_outputs_kept(model, ctx.example_inputs, output_shape)
        if step < params["steps"] - 1:
            ctx.fit(model, FitSettings(epochs=params["recover_epochs"], lr=0.02, seed=ctx.seed + step), None, f"recover step {step + 1}")
    return model.eval(), {"channels_before": before, "channels_after": _channels(model),
                          "ratio": params["ratio"], "importance": params["importance"], "steps": params["steps"],
                          "recover_epochs": params["recover_epochs"],
                          "round_to": params["round_to"]}


def prune_to_channels(model: nn.Module, channels: list[int], example_inputs: torch.Tensor,
                      importance: str = "l2") -> nn.Module:
    """Prune `model` in place so its i-th prunable conv/linear layer keeps exactly channels[i] outputs.

    The layers counted are those `structured` prunes (every Conv2d and Linear but the classifier),
    in registration order. Used to start a narrower zoo student from the teacher's most important
    channels. Raises PassNotApplicable when the counts do not match the model's layers.
    """
    output_shape = _output_shape(model, example_inputs)
    ignored = _classifier(model, example_inputs)
    layers = _pruned_layers(model, ignored)
    if len(layers) != len(channels):
        raise PassNotApplicable(f"{len(channels)} channel counts given for {len(layers)} prunable layers")
    per_layer = {}
    for layer, keep in zip(layers, channels):
        have = _outputs(layer)
        if not 1 <= keep <= have:
            raise PassNotApplicable(f"cannot keep {keep} of {have} channels in {layer}")
        per_layer[layer] = _ratio_keeping(have, keep)
    pruner = _pruner(model, example_inputs[:1], importance=_importance(importance),
                     pruning_ratio=0.0, pruning_ratio_dict=per_layer, ignored_layers=ignored)
    pruner.step()
    model.zero_grad(set_to_none=True)
    _check_outputs_kept(model, example_inputs, output_shape)
    return model.eval()


def _pruner(model: nn.Module, example_inputs: torch.Tensor, **settings: Any) -> Any:
    """Torch-Pruning's BasePruner, its warnings about the model (e.g. "Unwrapped parameters
    detected": a bare nn.Parameter it leaves unpruned) sent to the run log, not over the progress bars."""
    import torch_pruning as tp

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pruner = tp.pruner.BasePruner(model, example_inputs, **settings)
    for warning in caught:
        log.info("Torch-Pruning: %s", str(warning.message).strip())
    return pruner


def prunable_channels(model: nn.Module, example_inputs: torch.Tensor) -> list[int]:
    """Output channels of the layers `prune_to_channels` counts, in the same order."""
    return [_outputs(layer) for layer in _pruned_layers(model, _classifier(model, example_inputs))]


def _pruned_layers(model: nn.Module, ignored: list[nn.Module]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in ignored]


def _outputs(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
