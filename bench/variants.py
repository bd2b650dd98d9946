"""Variants: the baseline plus every configured chain of compression passes, with caching.

Model passes run here, in chain order; each result is cached as a state_dict keyed by the hash
of the baseline, the chain so far and everything else that determines its weights
(pass_key_context: the data, the batches, the code), so a second run of the same config only
re-measures. An artifact-level pass (quantize.*) is recorded on the Variant and runs at export.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.cache import PASS_CODE, cache_key, cache_path, code_digest, library_versions
from bench.checkpoints import save_state_dict
from bench.config import Config
from bench.data import Dataset
from bench.errors import ConfigError, UserError, exception_line
from bench.models import build_model, count_macs, count_params
from bench.train import (accuracy, data_fingerprint, predict_logits, resolve_train_precision, run_fit, to_tensor,
                         training_arithmetic)
from compress.chain import PassCall, parse_chain
from compress.context import PassContext, PassNotApplicable
from compress.prune import weight_sparsity
from compress.registry import resolve, student_model
from compress.reshape import fit_to_state_dict
from compress.train import FitSettings


@dataclass
class Variant:
    """A named model and how it was made from the baseline."""

    name: str
    model: nn.Module | None  # None when a pass of its chain failed (then `error` says why)
    lineage: list[str] = field(default_factory=list)
    artifact_pass: PassCall | None = None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if (self.model is None) != (self.error is not None):
            raise ValueError(f"variant {self.name}: a model, or an error saying why there is none (not both)")

    @property
    def failed(self) -> bool:
        """Whether a pass of its chain failed: then it has no model and its rows are export_failed."""
        return self.error is not None

    @property
    def is_baseline(self) -> bool:
        return not self.lineage

    @property
    def changes_model(self) -> bool:
        """Whether the chain has a model pass before its artifact quantization pass, if any (so the model
        it quantizes is not the baseline's; a pass that changes nothing, like finetune(epochs=0), still counts)."""
        return len(self.lineage) > (1 if self.artifact_pass else 0)


log = logging.getLogger("edgebench")

TRAIN_FIT_IMAGES = 10_000  # training images a KD student's fit is measured on (a few seconds per model)


def make_context(config: Config, dataset: Dataset, baseline: nn.Module, *, quiet: bool) -> PassContext:
    bs = config.baseline.batch_size
    precision = resolve_train_precision(config.baseline.train_precision)

    @functools.cache
    def baseline_logits() -> torch.Tensor:
        return predict_logits(baseline, dataset.train, dataset)

    def fit(model: nn.Module, settings: FitSettings, teacher: nn.Module | None, description: str) -> list[float]:
        # every KD pass distils from the same fixed baseline: one pass over the training images, once per
        # run, replaces a teacher forward at every step of every KD pass (about half a quarter-width student's step)
        logits = baseline_logits() if teacher is baseline and not config.baseline.augment else None
        return run_fit(model, dataset, settings, bs, augment=config.baseline.augment, description=description,
                       teacher=teacher, teacher_logits=logits, quiet=quiet, precision=precision)

    def build_student(width: float, model: str = "") -> nn.Module:
        torch.manual_seed(config.baseline.seed)
        student = build_model(model or config.baseline.model, in_channels=dataset.input_shape[0],
                              num_classes=len(dataset.classes), width=config.baseline.width * width)
        # a factory that ignores `width` would hand back the teacher's architecture: every KD number would be meaningless
        if not model and width < 1 and count_params(student) >= count_params(baseline):
            raise ConfigError(f"distill(width={width:g}): model {config.baseline.model!r} built a student with "
                              f"{count_params(student)} parameters, not fewer than the teacher's {count_params(baseline)}; "
                              "its factory must take a `width` argument that scales its channels")
        return student

    n = min(256, len(dataset.train))
    return PassContext(fit=fit, baseline=baseline, build_student=build_student,
                       example_inputs=to_tensor(dataset.train.images[:n], dataset.mean, dataset.std),
                       example_labels=torch.from_numpy(dataset.train.labels[:n]),
                       evaluate=lambda m: accuracy(m, dataset.test, dataset), seed=config.baseline.seed,
                       evaluate_train=lambda m: accuracy(m, dataset.train.head(TRAIN_FIT_IMAGES), dataset),
                       train_fit_images=min(TRAIN_FIT_IMAGES, len(dataset.train)))


def _apply_cached(call: PassCall, model: nn.Module, ctx: PassContext, key: str, cache_dir: Path,
                  on_step: Any, evaluation_set: str) -> tuple[nn.Module, dict[str, Any]]:
    weights, info_file = cache_path(cache_dir, "passes", key), cache_path(cache_dir, "passes", key, ".json")
    start = (ctx.build_student(call.params["width"], student_model(call.params))
             if call.spec.name == "distill" and call.params["width"] else model)
    cached = _load_cached(start, weights, info_file, evaluation_set)
    if cached is not None:
        return cached
    on_step(str(call))
    evaluated: list[bool] = []  # whether the pass measured anything on the evaluation (test) set
    counting = dataclasses.replace(ctx, evaluate=lambda m: (evaluated.append(True), ctx.evaluate(m))[1])  # memo shared
    try:
        result = resolve(call.spec)(copy.deepcopy(model), call.params, counting)
    except PassNotApplicable as exc:  # e.g. init='teacher' on a custom architecture: a config error
        raise UserError(f"pass {call} cannot be applied: {exc}") from None
    new_model, info = result if isinstance(result, tuple) else (result, {})
    if evaluated:  # its top-1 numbers hold for this evaluation set only (the key leaves the test set out)
        info["evaluation_set"] = evaluation_set
    try:  # cache only what can be rebuilt from a state_dict (compress.reshape resizes conv, BN and linear layers)
        fit_to_state_dict(start, new_model.state_dict())
    except RuntimeError as exc:
        log.warning("pass %s: result not cached, it cannot be rebuilt from its weights: %s", call, exception_line(exc, 200, last=True))
        return new_model.eval(), {**info, "cached": False}
    save_state_dict(new_model, weights)
    info_file.write_text(json.dumps(info, default=str))
    return new_model.eval(), {**info, "cached": False}


def _load_cached(start: nn.Module, weights: Path, info_file: Path, evaluation_set: str) -> tuple[nn.Module, dict[str, Any]] | None:
    """The cached result of a pass, or None when there is none or it cannot be used (then it is recomputed)."""
    if not (weights.exists() and info_file.exists()):
        return None
    try:
        info = json.loads(info_file.read_text())
        if info.get("evaluation_set", evaluation_set) != evaluation_set:
            log.info("cached %s was evaluated on another test set: recomputing it", weights.name)
            return None
        state = torch.load(weights, map_location="cpu", weights_only=True)
        return fit_to_state_dict(start, state), {**info, "cached": True}
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign cache entry is recomputed, never trusted
        log.warning("cached %s is unusable (%s): recomputing it", weights.name, exception_line(exc, 200, last=True))
        return None


def _student_code(call: PassCall, digests: dict[str, str]) -> dict[str, str]:
    """The source digest of a distill call's custom `module:factory` student, whose files (its module
    and the user modules it imports) determine the student's weights as much as the pass code does
    ({} for every other call). `digests` holds those already computed in this run, by student."""
    student = student_model(call.params) if call.spec.name == "distill" else ""
    if ":" not in student:
        return {}
    if student not in digests:
        digests[student] = code_digest((), student)
    return {"student_code": digests[student]}


def pass_key_context(config: Config, dataset: Dataset) -> dict[str, Any]:
    """What, besides the weights it starts from and its own parameters, determines a pass's weights:
    the training split, how batches are drawn, how students are built, and the code that trains."""
    import torch_pruning

    b = config.baseline
    return {"data": data_fingerprint(dataset), "seed": b.seed, "batch_size": b.batch_size, "augment": b.augment,
            "train_arithmetic": training_arithmetic(resolve_train_precision(b.train_precision)),
            "model": b.model, "width": b.width, **library_versions(), "torch_pruning": torch_pruning.__version__,
            "code": code_digest(PASS_CODE, b.model)}  # edited pass or training code is never served stale weights


def build_variants(config: Config, dataset: Dataset, baseline: nn.Module, baseline_key: str, cache_dir: str | Path,
                   *, quiet: bool = False, on_step: Any = lambda text: None) -> list[Variant]:
    """The baseline first, then one Variant per [[variants]] entry, in config order."""
    shape = dataset.input_shape
    base_macs, base_params = count_macs(baseline, shape), count_params(baseline)
    variants = [Variant("baseline", baseline, info={"macs": base_macs, "params": base_params})]
    ctx = make_context(config, dataset, baseline, quiet=quiet)
    memo: dict[str, tuple[nn.Module, dict[str, Any]]] = {}  # chains sharing a prefix train it once
    key_context, evaluation_set = pass_key_context(config, dataset), dataset.test.digest
    failures: dict[str, str] = {}  # cache key -> why its pass failed: chains sharing the prefix fail without a retry
    student_digests: dict[str, str] = {}
    for vcfg in config.variants:
        calls = parse_chain(vcfg.passes, vcfg.name)
        model, infos, key = baseline, [], baseline_key
        artifact_pass = next((call for call in calls if call.spec.kind != "model"), None)
        error: str | None = None
        for call in (call for call in calls if call.spec.kind == "model"):
            key = cache_key({"parent": key, "pass": str(call), "context": key_context,
                             **_student_code(call, student_digests)})
            if key in failures:
                error = failures[key]
                break
            if key not in memo:
                try:
                    memo[key] = _apply_cached(call, model, ctx, key, Path(cache_dir),
                                              lambda text, name=vcfg.name: on_step(f"{name}: pass {text}"), evaluation_set)
                except UserError:
                    raise
                except Exception as exc:  # noqa: BLE001 - e.g. Torch-Pruning on a layer it cannot handle
                    # One variant's broken pass must not cost the others their rows: this one gets
                    # export_failed rows that say why, and the run goes on.
                    error = failures[key] = f"pass {call} failed: {exception_line(exc, 200, last=True)}"
                    log.warning("%s: %s", vcfg.name, error, exc_info=True)  # the stack, for a bug in a pass
                    on_step(f"{vcfg.name}: {error} (its rows are export_failed; the other variants go on)")
                    break
            model, info = memo[key]
            infos.append({"pass": str(call), **info})
        if error is not None:
            variants.append(Variant(vcfg.name, None, [str(c) for c in calls], artifact_pass, {"passes": infos, "error": error}, error))
            continue
        macs, params = count_macs(model, shape), count_params(model)
        info = {"passes": infos, "macs": macs, "params": params,
                # a custom baseline may do no counted work (or hold no parameters): no ratio then, not a division by zero
                "macs_ratio_to_baseline": macs / base_macs if base_macs else None,
                "params_ratio_to_baseline": params / base_params if base_params else None,
                # of the fp32 model the chain's model passes end with (before any ONNX quantization);
                # a pass's own sparsity_reached is measured when that pass ran
                "weight_sparsity": round(weight_sparsity(model), 6)}
        variants.append(Variant(vcfg.name, model, [str(c) for c in calls], artifact_pass, info))
    return variants
