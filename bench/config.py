"""The run configuration: typed sections, validation with clear errors, and TOML output.

Every key is declared once, as a dataclass field with a help text and its allowed values; the
loader, the validator and `edgebench run --print-config` are all generated from those fields.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.config_checks import (MAX_BATCH, MAX_TIMEOUT_S, at_least, batch_sizes, in_range, masker_problem, names_a_folder,
                                 repeated, seed_range, severities, subset_of, thread_count, thread_counts, unit_interval_open)
from bench.config_sections import build_section, suggest
from bench.errors import ConfigError
from explain.drift import DEFAULT_THRESHOLD
from explain.faithfulness import DEFAULT_STEPS
from explain.shap_explain import DEFAULT_BATCH_SIZE, DEFAULT_MASKER

FORMATS = ("torch", "onnx", "tflite")
TFLITE_PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8")
DEVICES = ("cpu", "auto", "cuda")
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")


def _key(help: str, *, check: Callable[[Any], str | None] | None = None, **kw: Any) -> Any:
    """A config field with its help text and an optional check returning an error or None."""
    return field(metadata={"help": help, "check": check}, **kw)


@dataclass
class DataConfig:
    dataset: str = _key("dataset name: 'fashion-mnist', or 'imagefolder' for a folder of class sub-folders", default="fashion-mnist")
    data_dir: str = _key("folder with the IDX files (or the ImageFolder root); '' searches the Debian package path and the cache", default="")
    download: bool = _key("download Fashion-MNIST with torchvision when no local copy is found (needs network)", default=True)
    val_size: int = _key("images carved from the training set for validation (the test set is only used for final metrics)", default=5000, check=at_least(1))
    train_limit: int = _key("use only the first N training images (0 = all); for quick experiments", default=0, check=at_least(0))
    test_limit: int = _key("use only the first N test images (0 = all 10000); final metrics then cover fewer images", default=0, check=at_least(0))
    seed: int = _key("seed of the train/validation split", default=0, check=seed_range)


@dataclass
class BaselineConfig:
    model: str = _key("baseline architecture from `edgebench list`, or 'package.module:factory' returning an nn.Module", default="edgecnn")
    width: float = _key("channel width multiplier of the zoo model", default=1.0, check=lambda v: None if v > 0 else "must be > 0")
    checkpoint: str = _key("load these weights (a state_dict .pt/.pth loaded with weights_only=True, or .safetensors) instead of training", default="")
    epochs: int = _key("training epochs (0 keeps the random initialisation)", default=5, check=at_least(0))
    batch_size: int = _key("training batch size (256 trains fastest per image on 2 cores)", default=256, check=at_least(1))
    lr: float = _key("peak learning rate of the one-cycle schedule (SGD with Nesterov momentum)", default=0.2, check=lambda v: None if v > 0 else "must be > 0")
    weight_decay: float = _key("weight decay", default=5e-4, check=at_least(0))
    label_smoothing: float = _key("label smoothing of the cross-entropy loss", default=0.1, check=unit_interval_open)
    augment: bool = _key("random crop (pad 2) and horizontal flip during training (off: at a 5-epoch budget it cost 1.4 pt here)", default=False)
    seed: int = _key("seed of weight init, data order and augmentation", default=0, check=seed_range)
    threads: int = _key("CPU threads for training (0 = all logical cores)", default=0, check=thread_count)
    train_precision: str = _key("'auto', 'fp32' or 'bf16': arithmetic of training steps (baseline and passes); 'bf16' runs "
                                "them under bfloat16 autocast (weights, evaluation and exported models stay fp32), 'auto' "
                                "picks bf16 where the CPU has native bf16 (AMX tiles or AVX-512 BF16: 1.75-2x faster steps for edgecnn) and fp32 elsewhere",
                                default="auto", check=lambda v: None if v in TRAIN_PRECISIONS else f"expected one of {list(TRAIN_PRECISIONS)}")


@dataclass
class VariantConfig:
    name: str = _key("variant name, unique in the run (used in file names)")
    passes: list[str] = _key("ordered passes, e.g. [\"prune.structured(ratio=0.5)\", \"finetune(epochs=1)\"]; see `edgebench list`")


@dataclass
class ExportConfig:
    formats: list[str] = _key(f"artifact formats to produce, any of {list(FORMATS)}", default_factory=lambda: ["torch", "onnx", "tflite"], check=subset_of(FORMATS))
    onnx_opset: int = _key("ONNX opset of the exported graphs", default=17, check=at_least(13))
    tflite_precisions: list[str] = _key(f"TFLite precisions, any of {list(TFLITE_PRECISIONS)}", default_factory=lambda: list(TFLITE_PRECISIONS), check=subset_of(TFLITE_PRECISIONS, empty_ok=True))
    calibration_images: int = _key("training-split images in TFLite's representative dataset for full-int8 (ONNX quantize.static takes its own images=N)", default=256, check=at_least(1))
    parity_images: int = _key("test images used for the fp32 parity check against torch", default=1000, check=at_least(1))
    parity_tolerance: float = _key("max abs logit difference allowed for an fp32 artifact vs its torch source (scaled by the largest |logit| / 100 beyond 100)", default=1e-4, check=lambda v: None if v > 0 else "must be > 0")
    quantized_min_agreement: float = _key("min top-1 agreement of a reduced-precision artifact with its fp32 parent", default=0.97, check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]")
    quantized_max_top1_drop: float = _key("max top-1 loss of a reduced-precision artifact vs its fp32 parent (0.01 = 1 pt)", default=0.01, check=unit_interval_open)


@dataclass
class BenchmarkConfig:
    runtimes: list[str] = _key("runtimes to measure (see `edgebench list`)", default_factory=lambda: ["torch", "onnxruntime", "litert"])
    device: str = _key(f"one of {list(DEVICES)}; 'auto' adds CUDA cells, measured where a GPU is present and skipped rows saying why where none is", default="cpu", check=lambda v: None if v in DEVICES else f"expected one of {list(DEVICES)}")
    threads: list[int] = _key("thread counts to measure latency at", default_factory=lambda: [1], check=thread_counts)
    batch_sizes: list[int] = _key(f"batch sizes to measure latency at (at most {MAX_BATCH})", default_factory=lambda: [1], check=batch_sizes)
    throughput_batch: int = _key("batch size of the throughput measurement", default=32, check=in_range(1, MAX_BATCH))
    warmup_calls: int = _key("minimum warm-up calls per setting", default=10, check=at_least(0))
    warmup_seconds: float = _key("minimum warm-up time per setting, seconds", default=0.25, check=at_least(0))
    min_calls: int = _key("minimum timed calls per setting", default=1000, check=at_least(1))
    # 1 s, not 2: six fresh loads of the baseline's ORT, LiteRT and torch artifacts timed 1 s or 2 s
    # (after 0.25 or 0.5 s of warm-up) gave the same mean p50 within 2% and the same spread between
    # loads (CV 2.4-3.9% against 2.5-3.2%): a p50 varies with the machine's state, not with more samples
    min_seconds: float = _key("minimum timed duration per setting, seconds", default=1.0, check=at_least(0))
    max_seconds: float = _key("stop a setting after this long even below min_calls (0 = no cap); the row records n", default=20.0, check=at_least(0))
    throughput_seconds: float = _key("timed duration of the throughput measurement at throughput_batch, seconds (it follows the "
                                     "latency timing, so the artifact is warm: 3 warm-up calls)", default=0.5, check=at_least(0))
    paired_rounds: int = _key("rounds of interleaved timing of every row against the baseline's row on the same runtime, "
                              "at the smallest batch and fewest threads; gives a drift-free speed-up (0 = off; --quick caps it at 4 rounds of 20 calls)",
                              default=20, check=lambda v: None if v == 0 or v >= 2 else "must be 0 (off) or at least 2")
    paired_calls: int = _key("timed calls per block of the paired timing (each round is one block of each)", default=50, check=at_least(1))
    eval_batch: int = _key("batch size used to compute predictions on the test set", default=256, check=at_least(1))
    eval_threads: int = _key("threads used to compute predictions on the test and robustness sets (not timed; 0 = every core "
                             "this process may use); latency and throughput keep `threads`", default=0, check=thread_count)
    robustness: bool = _key("measure accuracy on corrupted test images (MNIST-C style) and ECE for every row", default=True)
    robustness_images: int = _key("test images per corruption set (--quick caps it at 300)", default=1000, check=at_least(1))
    corruption_severities: list[int] = _key("corruption severities to use, each in 1..3", default_factory=lambda: [1, 3], check=severities)
    adversarial: bool = _key("replay FGSM and PGD examples crafted on the fp32 torch baseline on every artifact (transfer attack)", default=True)
    adversarial_epsilon: float = _key("L-infinity budget of the attacks on the [0, 1] pixel scale", default=0.1, check=lambda v: None if 0 < v < 1 else "must be in (0, 1)")
    adversarial_images: int = _key("test images attacked (--quick caps it at 200)", default=1000, check=at_least(1))
    pgd_steps: int = _key("PGD iterations (step size epsilon/4, random start)", default=10, check=at_least(1))


@dataclass
class ExplainConfig:
    enabled: bool = _key("compute SHAP explanations for every ok row", default=True)
    per_class: int = _key("explained test images per class (seeded)", default=2, check=at_least(1))
    max_evals: int = _key("model evaluations per explained image (Partition explainer budget)", default=500, check=at_least(10))
    seed: int = _key("seed of the explanation image choice", default=0, check=seed_range)
    masker: str = _key("how SHAP hides pixels: 'blur(kx,ky)', 'inpaint_telea' or 'inpaint_ns'", default=DEFAULT_MASKER, check=masker_problem)
    batch_size: int = _key("masked images per model call in the Partition explainer", default=DEFAULT_BATCH_SIZE, check=at_least(1))
    flip_gallery: int = _key("test images whose top-1 flipped vs the baseline, explained and plotted per variant (0 = none)", default=8, check=at_least(0))
    drift_threshold: float = _key("flag a variant as drifted when its mean Spearman correlation with the baseline's attributions is below this", default=DEFAULT_THRESHOLD, check=lambda v: None if -1 <= v <= 1 else "must be in [-1, 1]")
    deletion_steps: int = _key("steps of the deletion faithfulness curve", default=DEFAULT_STEPS, check=at_least(2))
    share_fp32: bool = _key("fp32 rows of a variant that passed parity reuse one explanation (the row says so)", default=True)
    workers: int = _key("parallel explanation processes", default=2, check=at_least(1))
    job_timeout_s: float = _key("a row's explanation fails after this many seconds", default=600.0,
                                check=lambda v: None if 0 < v <= MAX_TIMEOUT_S else f"must be in (0, {MAX_TIMEOUT_S:g}]")


@dataclass
class OutputConfig:
    dir: str = _key("folder that receives one sub-folder per run", default="results", check=names_a_folder)
    cache_dir: str = _key("folder of cached trained weights (keyed by a hash of what determines them)", default="results/.cache",
                          check=names_a_folder)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    variants: list[VariantConfig] = field(default_factory=list)
    export: ExportConfig = field(default_factory=ExportConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """A short hash of the whole resolved config, used in run ids."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:8]


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "baseline": BaselineConfig,
    "export": ExportConfig,
    "benchmark": BenchmarkConfig,
    "explain": ExplainConfig,
    "output": OutputConfig,
}


def config_from_dict(raw: dict[str, Any], source: str = "config") -> Config:
    """Validate a parsed TOML document and build a Config; raises ConfigError naming the key."""
    allowed = set(SECTIONS) | {"variants"}
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{source}: unknown section [{key}]{suggest(key, allowed)}; valid sections: {', '.join(sorted(allowed))}")
    sections = {name: build_section(cls, raw.get(name, {}), f"{source} [{name}]") for name, cls in SECTIONS.items()}
    variants_raw = raw.get("variants", [])
    if not isinstance(variants_raw, list):
        raise ConfigError(f"{source}: [[variants]] must be an array of tables")
    variants = [build_section(VariantConfig, v, f"{source} [[variants]] #{i + 1}") for i, v in enumerate(variants_raw)]
    config = Config(variants=variants, **sections)
    validate_semantics(config, source)
    return config


def validate_semantics(config: Config, source: str) -> None:
    """Checks that need the registries (names of models, runtimes, passes) or several keys at once."""
    from bench import models, runtimes  # light modules: no heavy framework imports
    from compress.chain import PassSyntaxError, parse_chain
    from compress.registry import student_model

    if config.data.dataset not in ("fashion-mnist", "imagefolder"):
        raise ConfigError(f"{source} [data].dataset = {config.data.dataset!r}: expected 'fashion-mnist' or 'imagefolder'")
    if config.data.dataset == "imagefolder" and not config.data.data_dir:
        raise ConfigError(f"{source} [data].data_dir: required when dataset = 'imagefolder'")
    models.check_model_name(config.baseline.model, f"{source} [baseline].model")
    bad_rt = [r for r in config.benchmark.runtimes if r not in runtimes.RUNTIMES]
    if bad_rt:
        raise ConfigError(f"{source} [benchmark].runtimes: unknown runtime {bad_rt[0]!r}{suggest(bad_rt[0], runtimes.RUNTIMES)}; expected any of {list(runtimes.RUNTIMES)}")
    if twice := repeated(config.benchmark.runtimes):
        raise ConfigError(f"{source} [benchmark].runtimes {twice}")
    if "tflite" in config.export.formats and not config.export.tflite_precisions:  # empty is fine without TFLite
        raise ConfigError(f"{source} [export].tflite_precisions: must name at least one of {list(TFLITE_PRECISIONS)} "
                          "while [export].formats has 'tflite'")
    for fmt in config.export.formats:  # an artifact nothing runs would get no row at all, not even a failed one
        if not runtimes.runtime_for_format(fmt, config.benchmark.runtimes):
            needed = [name for name, spec in runtimes.RUNTIMES.items() if fmt in spec.formats]
            raise ConfigError(f"{source} [export].formats has {fmt!r} but [benchmark].runtimes has no runtime that runs it "
                              f"(add {' or '.join(map(repr, needed))}, or drop {fmt!r} from the formats)")
    names: set[str] = set()
    for i, variant in enumerate(config.variants):
        where = f"{source} [[variants]] #{i + 1} ({variant.name!r})"
        # it names files and folders: '..' would write beside artifacts/, a leading '.' would hide them
        # ASCII only: the run's file-name rule (bench.results.key_slug) refuses other letters
        if not variant.name or not _ascii_alnum(variant.name[0]) or not all(_ascii_alnum(c) or c in "-_." for c in variant.name):
            raise ConfigError(f"{where}: name must start with a letter or digit and use only ASCII letters, digits, '-', '_' and '.'")
        if len(variant.name) > 100:  # it is joined with format, precision and runtime into file names (255 bytes at most)
            raise ConfigError(f"{where}: name has {len(variant.name)} characters; at most 100")
        if variant.name == "baseline":
            raise ConfigError(f"{where}: the name 'baseline' is reserved for the unchanged model; pick another")
        if variant.name in names:
            raise ConfigError(f"{where}: duplicate variant name (each variant needs its own)")
        names.add(variant.name)
        try:
            calls = parse_chain(variant.passes, where)
        except PassSyntaxError as exc:
            raise ConfigError(str(exc)) from None
        for call in calls:  # a student model is checked like [baseline].model, before any training
            if call.spec.name == "distill" and student_model(call.params):
                models.check_model_name(call.params["student"], f"{where} distill(student=...)")
        artifact_passes = [c for c in calls if c.spec.kind != "model"]  # they make an ONNX artifact
        if artifact_passes and not runtimes.runtime_for_format("onnx", config.benchmark.runtimes):
            raise ConfigError(f"{where}: {artifact_passes[0].spec.name} makes an ONNX artifact, but [benchmark].runtimes "
                              "has no runtime that runs ONNX (add 'onnxruntime')")


def _ascii_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def load_config(path: str | Path | None) -> Config:
    """Load and validate a TOML config; None gives the built-in default config."""
    if path is None:
        from importlib.resources import files

        text = files("bench").joinpath("default_config.toml").read_text()
        return config_from_dict(tomllib.loads(text), "default config")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")  # TOML is UTF-8 by definition, whatever the locale
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.__class__.__name__}: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer of more digits than Python converts
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return config_from_dict(raw, str(path))
