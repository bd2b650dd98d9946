"""Wiring of robustness sets into a run: build them once, score every row on them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.config import BenchmarkConfig
from bench.data import Dataset
from bench.robustness import attack, corruption_sets, expected_calibration_error, summarise
from bench.train import to_tensor


@dataclass
class RobustnessSets:
    """All robustness images in one uint8 file, and where each set lies in it."""

    images_file: Path
    spans: dict[str, tuple[int, int]]
    labels: dict[str, np.ndarray]
    settings: dict[str, Any]


def build_sets(cfg: BenchmarkConfig, dataset: Dataset, baseline: nn.Module, run_dir: Path, quick: bool,
               seed: int = 0) -> RobustnessSets | None:
    if not cfg.robustness and not cfg.adversarial:
        return None
    n_corr = min(cfg.robustness_images, 300 if quick else cfg.robustness_images, len(dataset.test))
    n_adv = min(cfg.adversarial_images, 200 if quick else cfg.adversarial_images, len(dataset.test))
    images, labels = dataset.test.images, dataset.test.labels
    sets: dict[str, np.ndarray] = {}
    set_labels: dict[str, np.ndarray] = {}
    if cfg.robustness:
        for name, corrupted in corruption_sets(images[:n_corr], cfg.corruption_severities, seed).items():
            sets[name], set_labels[name] = corrupted, labels[:n_corr]
    if cfg.adversarial:
        eps = cfg.adversarial_epsilon
        for name, steps in _attacks(cfg):
            key = _attack_key(name, eps)
            sets[key] = attack(baseline, images[:n_adv], labels[:n_adv], dataset.mean, dataset.std, epsilon=eps, steps=steps, seed=seed)
            set_labels[key] = labels[:n_adv]
    spans, start = {}, 0
    for name, block in sets.items():
        spans[name] = (start, start + len(block))
        start += len(block)
    path = run_dir / "work" / "robustness_images.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.concatenate(list(sets.values())), allow_pickle=False)
    settings = {"corruption_images": n_corr if cfg.robustness else 0, "severities": cfg.corruption_severities,
                "adversarial_images": n_adv if cfg.adversarial else 0, "epsilon": cfg.adversarial_epsilon,
                "pgd_steps": cfg.pgd_steps, "crafted_on": "fp32 torch baseline (transfer attack for every other artifact)",
                "seed": seed}
    return RobustnessSets(path, spans, set_labels, settings)


def set_accuracy(logits: np.ndarray, sets: RobustnessSets) -> dict[str, float]:
    return {name: float((logits[a:b].argmax(1) == sets.labels[name]).mean()) for name, (a, b) in sets.spans.items()}


def robustness_block(extra_logits: np.ndarray, clean_top1: float, sets: RobustnessSets,
                     baseline_block: dict[str, Any] | None) -> dict[str, Any]:
    return summarise(set_accuracy(extra_logits, sets), clean_top1, baseline_block)


def whitebox_block(model: nn.Module, dataset: Dataset, cfg: BenchmarkConfig, sets: RobustnessSets) -> dict[str, float]:
    """Attacks crafted on this very model (torch rows only: int8 artifacts have no gradients), seeded
    and named as the transfer attacks of `sets` are, so the two are read side by side."""
    n = sets.settings["adversarial_images"]
    if not n:
        return {}
    images, labels = dataset.test.images[:n], dataset.test.labels[:n]
    out = {}
    for name, steps in _attacks(cfg):
        adv = attack(model, images, labels, dataset.mean, dataset.std, epsilon=cfg.adversarial_epsilon, steps=steps,
                     seed=sets.settings["seed"])
        with torch.no_grad():
            pred = model(to_tensor(adv, dataset.mean, dataset.std)).argmax(1).numpy()
        out[_attack_key(name, cfg.adversarial_epsilon)] = float((pred == labels).mean())
    return out


def _attacks(cfg: BenchmarkConfig) -> tuple[tuple[str, int], ...]:
    """(name, gradient steps) of each adversarial set: FGSM is one step of PGD."""
    return (("fgsm", 1), ("pgd", cfg.pgd_steps))


def _attack_key(name: str, epsilon: float) -> str:
    return f"{name}-eps{epsilon:g}"


def calibration_block(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return expected_calibration_error(logits, labels, bins=15)
