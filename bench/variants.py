"""Variants: the baseline plus every configured chain of compression passes, with caching.

Model passes run here, in chain order; each result is cached as a state_dict keyed by the hash
of the baseline, the chain so far and the data, so a second run of the same config only
re-measures. An artifact-level pass (quantize.*) is recorded on the Variant and runs at export.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.cache import cache_key, cache_path
from bench.checkpoints import save_state_dict
from bench.config import Config
from bench.data import Dataset
from bench.errors import UserError
from bench.models import build_model, count_macs, count_params
from bench.train import accuracy, predict_logits, run_fit, to_tensor
from compress.chain import PassCall, parse_chain
from compress.context import PassContext
from compress.registry import resolve
from compress.reshape import fit_to_state_dict
from compress.train import FitSettings


@dataclass
class Variant:
    """A named model and how it was made from the baseline."""

    name: str
    model: nn.Module
    lineage: list[str] = field(default_factory=list)
    artifact_pass: PassCall | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_baseline(self) -> bool:
        return not self.lineage

    @property
    def changes_model(self) -> bool:
        """Whether the chain has a model pass before its artifact quantization pass, if any (so the model
        it quantizes is not the baseline's; a pass that changes nothing, like finetune(epochs=0), still counts)."""
        return len(self.lineage) > (1 if self.artifact_pass else 0)


TRAIN_FIT_IMAGES = 10_000  # training images a KD student's fit is measured on (a few seconds per model)


def make_context(config: Config, dataset: Dataset, baseline: nn.Module, *, quiet: bool) -> PassContext:
    bs = config.baseline.batch_size
    @functools.cache
    def baseline_logits() -> torch.Tensor:
        return predict_logits(baseline, dataset.train, dataset)

    def fit(model: nn.Module, settings: FitSettings, teacher: nn.Module | None, description: str) -> list[float]:
        # every KD pass distils from the same fixed baseline: one pass over the training images, once per
        # run, replaces a teacher forward at every step of every KD pass (about half a quarter-width student's step)
        logits = baseline_logits() if teacher is baseline and not config.baseline.augment else None
        return run_fit(model, dataset, settings, bs, augment=config.baseline.augment, description=description,
                       teacher=teacher, teacher_logits=logits, quiet=quiet)

    def build_student(width: float) -> nn.Module:
        torch.manual_seed(config.baseline.seed)
        return build_model(config.baseline.model, in_channels=dataset.input_shape[0],
                           num_classes=len(dataset.classes), width=config.baseline.width * width)

    n = min(256, len(dataset.train))
    return PassContext(fit=fit, baseline=baseline, build_student=build_student,
                       example_inputs=to_tensor(dataset.train.images[:n], dataset.mean, dataset.std),
                       example_labels=torch.from_numpy(dataset.train.labels[:n]),
                       evaluate=lambda m: accuracy(m, dataset.test, dataset), seed=config.baseline.seed,
                       evaluate_train=lambda m: accuracy(m, dataset.train.head(TRAIN_FIT_IMAGES), dataset),
                       train_fit_images=min(TRAIN_FIT_IMAGES, len(dataset.train)))


def _apply_cached(call: PassCall, model: nn.Module, ctx: PassContext, key: str, cache_dir: Path,
                  on_step: Any) -> tuple[nn.Module, dict[str, Any]]:
    weights, info_file = cache_path(cache_dir, "passes", key), cache_path(cache_dir, "passes", key, ".json")
    if weights.exists() and info_file.exists():
        state = torch.load(weights, map_location="cpu", weights_only=True)
        start = ctx.build_student(call.params["width"]) if call.spec.name == "distill" and call.params["width"] else model
        return fit_to_state_dict(start, state), {**json.loads(info_file.read_text()), "cached": True}
    on_step(str(call))
    try:
        result = resolve(call.spec)(copy.deepcopy(model), call.params, ctx)
    except ValueError as exc:  # a pass that cannot apply to this model, e.g. init='teacher' on a custom architecture
        raise UserError(f"pass {call} cannot be applied: {exc}") from None
    new_model, info = result if isinstance(result, tuple) else (result, {})
    save_state_dict(new_model, weights)
    info_file.write_text(json.dumps(info, default=str))
    return new_model.eval(), {**info, "cached": False}


def build_variants(config: Config, dataset: Dataset, baseline: nn.Module, baseline_key: str, cache_dir: str | Path,
                   *, quiet: bool = False, on_step: Any = lambda text: None) -> list[Variant]:
    """The baseline first, then one Variant per [[variants]] entry, in config order."""
    shape = dataset.input_shape
    base_macs, base_params = count_macs(baseline, shape), count_params(baseline)
    variants = [Variant("baseline", baseline, info={"macs": base_macs, "params": base_params})]
    ctx = make_context(config, dataset, baseline, quiet=quiet)
    memo: dict[str, tuple[nn.Module, dict[str, Any]]] = {}  # chains sharing a prefix train it once
    for vcfg in config.variants:
        calls = parse_chain(vcfg.passes, vcfg.name)
        model, infos, key = baseline, [], baseline_key
        artifact_pass = None
        for call in calls:
            if call.spec.kind != "model":
                artifact_pass = call
                continue
            key = cache_key({"parent": key, "pass": str(call)})
            if key not in memo:
                memo[key] = _apply_cached(call, model, ctx, key, Path(cache_dir), on_step)
            model, info = memo[key]
            infos.append({"pass": str(call), **info})
        macs, params = count_macs(model, shape), count_params(model)
        info = {"passes": infos, "macs": macs, "params": params,
                "macs_ratio_to_baseline": macs / base_macs, "params_ratio_to_baseline": params / base_params}
        variants.append(Variant(vcfg.name, model, [str(c) for c in calls], artifact_pass, info))
    return variants
