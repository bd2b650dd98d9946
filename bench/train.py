"""Feeding datasets to the shared training loop, and the cached baseline.

Augmentation (random crop with 2-pixel padding, horizontal flip) is done on whole uint8 batches
in numpy: cheap, seeded per epoch, and independent of torch's DataLoader workers (2 cores only).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from bench.cache import TRAINING_CODE, cache_key, cache_path, code_digest, library_versions
from bench.checkpoints import load_state_dict_file, save_state_dict
from bench.config import BaselineConfig
from bench.data import Dataset, Split, batch_indices, batches
from bench.errors import UserError, first_line
from bench.models import build_model
from bench.progress import progress_bar
from compress.train import EpochBatches, FitSettings, fit

log = logging.getLogger("edgebench")


def to_tensor(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalise raw uint8 (N, C, H, W) images exactly as `bench.inputs.prepare_input` does."""
    x = torch.from_numpy(images.astype(np.float32)) * (1 / 255)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def _augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)))
    dy, dx = rng.integers(0, 5, size=2)  # one shift per batch keeps this vectorised
    out = padded[:, :, dy:dy + h, dx:dx + w].copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, :, ::-1]
    return out


# Channels-last makes oneDNN's training convolutions faster, but its BatchNorm kernels vectorise
# across channels: a layer narrower than one AVX-512 register of floats (16) leaves lanes idle, and
# BatchNorm then costs more than the convolutions save. Measured here (a training step at batch 256,
# torch 2.14, 2-core Xeon), channels-last against contiguous: edgecnn's 24-48-48-64 channels 1.0-1.2x
# as fast, 16-32-32-48 1.4x, 8-24-24-32 0.9x, 12-24-24-32 0.85x, 6-12-12-16 (quarter width) 0.5x.
CHANNELS_LAST_MIN_BN_WIDTH = 16


def training_memory_format(model: nn.Module, input_shape: tuple[int, ...]) -> torch.memory_format:
    """The memory format `model` trains fastest in: channels-last unless a BatchNorm2d is narrow or
    the model cannot take channels-last inputs."""
    widths = [m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    narrow = bool(widths) and min(widths) < CHANNELS_LAST_MIN_BN_WIDTH
    if narrow or not _accepts(model, input_shape, torch.channels_last):
        return torch.contiguous_format
    return torch.channels_last


def _accepts(model: nn.Module, input_shape: tuple[int, ...], memory_format: torch.memory_format) -> bool:
    """Whether a training-mode forward pass runs on inputs (and weights) in `memory_format`. A model
    that flattens with `x.view(n, -1)` (not `reshape` or `nn.Flatten`), as many tutorials' do,
    cannot take channels-last tensors. Probed on a copy, with the random state restored after it:
    the model's weights, BatchNorm statistics and the training's random draws stay as they were."""
    import copy

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            probe = copy.deepcopy(model).train().to(memory_format=memory_format)
            probe(torch.zeros(2, *input_shape).contiguous(memory_format=memory_format))
            return True
        except Exception:  # noqa: BLE001 - any failure: train in the default format, where a real error shows itself
            return False


# what each resolved train_precision runs the forward passes under (None: no autocast)
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def resolve_train_precision(setting: str) -> str:
    """'fp32' or 'bf16' for a `[baseline] train_precision` setting: 'auto' is bf16 where the CPU runs
    bf16 dot products natively, which oneDNN uses for bf16 convolutions: AMX tiles (a training step of
    edgecnn at batch 256 took half the time of fp32 on the AMX host) or AVX-512 BF16 (`run_fit` 1.75x
    as fast as in fp32 on the AMD EPYC host with it). Without either, bf16 is emulated, so 'auto' keeps fp32."""
    if setting != "auto":
        if setting not in AUTOCAST_DTYPES:
            raise ValueError(f"train_precision {setting!r}: expected 'auto' or one of {list(AUTOCAST_DTYPES)}")
        return setting
    return "bf16" if bf16_units() != "emulated" else "fp32"


def bf16_units() -> str:
    """What runs this CPU's bf16 dot products: 'amx' (AMX-BF16 tiles), 'avx512_bf16', or 'emulated'
    (neither, or unknown)."""
    import torch.cpu

    from bench.environment import cpu_info

    flags = set(cpu_info()["flags"])  # /proc/cpuinfo, on Linux
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x: absent means unknown
    try:
        amx = "amx_bf16" in flags or (has_amx is not None and bool(has_amx()))
    except RuntimeError:
        amx = False
    return "amx" if amx else "avx512_bf16" if "avx512_bf16" in flags else "emulated"


def training_arithmetic(precision: str) -> str:
    """The arithmetic this CPU trains in at a resolved precision, e.g. 'fp32 AVX512' or 'bf16 AVX512 amx'.
    It decides the weights bit for bit, so it keys the weight cache and a resumed run must match it:
    one seed gave 92.77% in fp32 on AVX-512 CPUs and 92.99% on an AVX2 one; in bf16, 93.03% on AMX
    tiles and 92.94% on AVX-512 BF16."""
    vectors = torch.backends.cpu.get_cpu_capability()  # the ATen kernels' ISA: DEFAULT, AVX2, AVX512, ...
    return f"bf16 {vectors} {bf16_units()}" if precision == "bf16" else f"{precision} {vectors}"


def resume_precision_error(recorded: dict[str, Any], setting: str) -> str | None:
    """Why a run whose `baseline_info` is `recorded` cannot go on here with `train_precision = setting`,
    or None. Its finished variants were trained in the recorded precision and arithmetic (fp32 for runs
    from before the setting existed; runs from before the arithmetic was recorded are checked by
    precision only): the rest must not be trained in another one, since 'auto' and the arithmetic
    follow the CPU."""
    before, now = recorded.get("train_precision", "fp32"), resolve_train_precision(setting)
    if before != now:
        why = " (it picks bf16 only on a CPU with AMX or AVX-512 BF16)" if setting == "auto" else ""
        return (f"its weights were trained in {before}, and train_precision = {setting!r} trains in {now} here{why}; "
                "resume it on the kind of CPU, and with the edgebench, it started with")
    if (trained_in := recorded.get("train_arithmetic")) and trained_in != (here := training_arithmetic(now)):
        return (f"its weights were trained in {trained_in} arithmetic and this CPU trains in {here}, which gives "
                "other weights; resume it on the kind of CPU it started on")
    return None


def epoch_batches(split: Split, dataset: Dataset, batch_size: int, *, augment: bool, seed: int,
                  teacher_logits: torch.Tensor | None = None,
                  memory_format: torch.memory_format = torch.contiguous_format) -> EpochBatches:
    """An `epoch -> iterator of (x, y) tensors` callable for `compress.train.fit`.

    With `teacher_logits` (one row per image of the split, see `predict_logits`) each batch is
    (x, y, the teacher's logits of x), so KD need not run the teacher at every step. Not with
    augment: the teacher must then see the augmented images.
    """
    if augment and teacher_logits is not None:
        raise ValueError("precomputed teacher logits cannot follow augmented images")

    def make(epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        rng = np.random.default_rng([seed, epoch])
        for idx in batch_indices(len(split), batch_size, shuffle=True, seed=seed * 1000 + epoch):
            images, labels = split.images[idx], split.labels[idx]
            if augment:
                images = _augment(images, rng)
            x = to_tensor(images, dataset.mean, dataset.std).contiguous(memory_format=memory_format)
            if teacher_logits is None:
                yield x, torch.from_numpy(labels)
            else:
                yield x, torch.from_numpy(labels), teacher_logits[torch.from_numpy(idx)]

    return make


def predict_logits(model: nn.Module, split: Split, dataset: Dataset, batch_size: int = 512) -> torch.Tensor:
    """The model's logits for every image of the split, in order (eval mode, no augmentation)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(to_tensor(images, dataset.mean, dataset.std)) for images, _ in batches(split, batch_size)])


def steps_per_epoch(split: Split, batch_size: int) -> int:
    return -(-len(split) // batch_size)


def accuracy(model: nn.Module, split: Split, dataset: Dataset, batch_size: int = 512) -> float:
    if not len(split):
        return 0.0
    return float((predict_logits(model, split, dataset, batch_size).argmax(1).numpy() == split.labels).mean())


def run_fit(model: nn.Module, dataset: Dataset, settings: FitSettings, batch_size: int, *, augment: bool,
            description: str, teacher: nn.Module | None = None, teacher_logits: torch.Tensor | None = None,
            quiet: bool = False, precision: str = "fp32") -> list[float]:
    """Train with a progress bar showing the running loss.

    `teacher_logits`: the teacher's `predict_logits` on the training split, used instead of running
    the teacher at every step (without augmentation only). `precision`: 'fp32' or 'bf16' (autocast;
    see `resolve_train_precision`).
    """
    steps = steps_per_epoch(dataset.train, batch_size)
    memory_format = training_memory_format(model, dataset.input_shape)
    make = epoch_batches(dataset.train, dataset, batch_size, augment=augment, seed=settings.seed,
                         teacher_logits=teacher_logits, memory_format=memory_format)
    with progress_bar(total=steps * settings.epochs, desc=description, unit="step", quiet=quiet, leave=False) as bar:
        def progress(step: int, loss: float) -> None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

        model.to(memory_format=memory_format)
        try:
            return fit(model, make, steps, settings, teacher=teacher, progress=progress, autocast=AUTOCAST_DTYPES[precision])
        finally:
            model.to(memory_format=torch.contiguous_format)


@dataclass
class TrainedModel:
    model: nn.Module
    info: dict[str, Any]


def data_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """What about the data determines trained weights: the training and validation images and labels
    themselves (not where the files came from), and the normalisation."""
    return {"name": dataset.name, "train": dataset.train.digest, "val": dataset.val.digest,
            "mean": dataset.mean, "std": dataset.std}


def baseline_model(cfg: BaselineConfig, dataset: Dataset, cache_dir: str | Path, *, checkpoint: str = "",
                   quiet: bool = False) -> TrainedModel:
    """Build the baseline: load user weights, reuse cached weights, or train and cache them."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, in_channels=dataset.input_shape[0], num_classes=len(dataset.classes), width=cfg.width)
    checkpoint = checkpoint or cfg.checkpoint
    precision = resolve_train_precision(cfg.train_precision)  # of the passes too, whatever the baseline's source
    arithmetic = {"train_precision": precision, "train_arithmetic": training_arithmetic(precision)}
    if checkpoint:
        model.load_state_dict(load_state_dict_file(checkpoint, model))
        digest = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()[:16]  # keys the passes' cache
        return TrainedModel(model.eval(), {"source": "checkpoint", "checkpoint": str(checkpoint), "cache_key": digest,
                                           **arithmetic, "val_top1": accuracy(model, dataset.val, dataset)})
    # the arithmetic trained in, not the setting: 'auto' and the CPU's kernels train other weights on other CPUs
    settings = {**{k: v for k, v in asdict(cfg).items() if k not in ("checkpoint", "threads")}, **arithmetic}
    key = cache_key({"baseline": settings, "data": data_fingerprint(dataset), "code": code_digest(TRAINING_CODE, cfg.model),
                     **library_versions()})
    path = cache_path(cache_dir, "baseline", key)
    if path.exists():
        cached = copy.deepcopy(model)  # `model` keeps its seeded initial weights should the entry be unusable
        try:
            cached.load_state_dict(load_state_dict_file(path, model))
        except (UserError, RuntimeError) as exc:  # a damaged or foreign cache entry is retrained, never trusted
            log.warning("cached baseline %s is unusable (%s): training it again", path.name, first_line(exc))
            if not quiet:
                tqdm.write(f"warning: the cached baseline {path} is unusable ({first_line(exc)}); training it again")
        else:
            return TrainedModel(cached.eval(), {"source": "cache", "cache_file": str(path), "cache_key": key,
                                                **arithmetic, "val_top1": accuracy(cached, dataset.val, dataset)})
    start = time.perf_counter()
    fit_settings = FitSettings(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               label_smoothing=cfg.label_smoothing, seed=cfg.seed)
    losses = run_fit(model, dataset, fit_settings, cfg.batch_size, augment=cfg.augment,
                     description=f"train {cfg.model}", quiet=quiet, precision=precision)
    seconds = time.perf_counter() - start
    save_state_dict(model, path)
    return TrainedModel(model.eval(), {"source": "trained", "cache_file": str(path), "cache_key": key,
                                       "train_seconds": round(seconds, 1), "epochs": cfg.epochs, **arithmetic,
                                       "losses": losses,
                                       "val_top1": accuracy(model, dataset.val, dataset)})
