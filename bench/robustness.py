"""Robustness test sets and calibration: corruptions, transfer/white-box attacks, ECE.

Every test set is made of raw uint8 images, so it is replayed on every deployed artifact
through the artifact's own input_spec (int8 TFLite included), exactly like the clean test set.
Corruptions follow the spirit of MNIST-C: fixed seeds, several kinds, two or more severities.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF
from torch import nn

# kind -> severity -> parameter; severities are 1 (mild) .. 3 (strong)
CORRUPTIONS: dict[str, dict[int, float]] = {
    "gaussian_noise": {1: 0.08, 2: 0.16, 3: 0.28},  # std, on the [0, 1] pixel scale
    "shot_noise": {1: 60.0, 2: 25.0, 3: 10.0},      # photons at full brightness (fewer = noisier)
    "blur": {1: 0.7, 2: 1.0, 3: 1.5},               # Gaussian sigma in pixels
    "contrast": {1: 0.5, 2: 0.3, 3: 0.15},          # contrast factor
    "brightness": {1: 0.2, 2: 0.35, 3: 0.5},        # added to [0, 1] pixels
    "rotation": {1: 10.0, 2: 20.0, 3: 30.0},        # degrees
    "translation": {1: 2.0, 2: 3.0, 3: 5.0},        # pixels, random direction
}


def corrupt(images: np.ndarray, kind: str, severity: int, seed: int = 0) -> np.ndarray:
    """A corrupted copy of raw uint8 (N, C, H, W) images; the same seed gives the same copy."""
    rng = np.random.default_rng([seed, severity, sorted(CORRUPTIONS).index(kind)])
    level = CORRUPTIONS[kind][severity]
    x = images.astype(np.float32) / 255.0
    if kind == "gaussian_noise":
        x = x + rng.normal(0, level, x.shape)
    elif kind == "shot_noise":
        x = rng.poisson(x * level) / level
    elif kind == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * level + mean
    elif kind == "brightness":
        x = x + level
    else:
        t = torch.from_numpy(x)
        if kind == "blur":
            radius = int(np.ceil(3 * level))
            t = TF.gaussian_blur(t, [2 * radius + 1] * 2, [level, level])
        elif kind == "rotation":
            angles = rng.uniform(-level, level, len(x))
            t = torch.stack([TF.rotate(img, float(a)) for img, a in zip(t, angles)])
        elif kind == "translation":
            shifts = rng.choice([-1, 1], (len(x), 2)) * level
            t = torch.stack([TF.affine(img, 0.0, [int(dx), int(dy)], 1.0, [0.0]) for img, (dx, dy) in zip(t, shifts)])
        x = t.numpy()
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def corruption_sets(images: np.ndarray, severities: list[int], seed: int) -> dict[str, np.ndarray]:
    return {f"{kind}-s{s}": corrupt(images, kind, s, seed) for kind in CORRUPTIONS for s in severities}


def _normaliser(mean: tuple[float, ...], std: tuple[float, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return lambda x01: (x01 - m) / s


ATTACK_CHUNK = 200  # images attacked together (see attack)


def attack(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
           *, epsilon: float, steps: int, seed: int = 0) -> np.ndarray:
    """L-infinity FGSM (steps=1) or PGD (steps>1, random start, step eps/4) on the [0, 1] pixel scale.

    Returns uint8 images, so the same adversarial set replays on any artifact (a transfer
    attack for every artifact but the model it was crafted on).
    """
    norm = _normaliser(mean, std)
    model.eval()
    x0_all = torch.from_numpy(images.astype(np.float32) / 255.0)
    y_all = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(seed)
    # the random start is drawn for the whole set at once, so it does not depend on the chunking
    start = x0_all.clone() if steps == 1 else (x0_all + (torch.rand(x0_all.shape, generator=generator) * 2 - 1) * epsilon).clamp(0, 1)
    step = epsilon if steps == 1 else epsilon / 4
    crafted = []
    # Each image's attack is independent (sign of its own gradient), so the set is attacked in
    # chunks: 1000 28x28 images at once spill the caches and took twice as long here.
    for i in range(0, len(x0_all), ATTACK_CHUNK):
        x0, y, x = x0_all[i:i + ATTACK_CHUNK], y_all[i:i + ATTACK_CHUNK], start[i:i + ATTACK_CHUNK]
        for _ in range(steps):
            x.requires_grad_(True)
            loss = nn.functional.cross_entropy(model(norm(x)), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = torch.min(torch.max(x + step * grad.sign(), x0 - epsilon), x0 + epsilon).clamp(0, 1)
        crafted.append(x.detach())
    if not crafted:
        return images.copy()
    return np.clip(np.round(torch.cat(crafted).numpy() * 255), 0, 255).astype(np.uint8)


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict[str, float]:
    """ECE with equal-width confidence bins (Guo et al., 2017) and the mean top-1 confidence."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return {"ece": float(ece), "mean_confidence": float(confidence.mean()), "bins": bins}


def summarise(set_accuracy: dict[str, float], clean_top1: float, baseline: dict[str, Any] | None) -> dict[str, Any]:
    """Robustness block of a row: mean corruption accuracy, drops vs clean and vs the baseline."""
    corr = {k: v for k, v in set_accuracy.items() if not k.startswith(("fgsm", "pgd"))}
    adv = {k: v for k, v in set_accuracy.items() if k.startswith(("fgsm", "pgd"))}
    mean_corr = float(np.mean(list(corr.values()))) if corr else None
    block: dict[str, Any] = {"corruption_top1": corr, "mean_corruption_top1": mean_corr,
                             "corruption_drop_vs_clean": None if mean_corr is None else clean_top1 - mean_corr,
                             "adversarial_transfer_top1": adv}
    if baseline and mean_corr is not None and baseline.get("mean_corruption_top1"):
        block["mean_corruption_top1_relative_to_baseline"] = mean_corr / baseline["mean_corruption_top1"]
    return block
