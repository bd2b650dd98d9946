"""What `edgebench run` checks before it creates a run folder: the data loads, a CUDA request can be met, and the
baseline model (and checkpoint) fits the data. Their errors end in one line with nothing written."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.cells import tflite_unavailable
from bench.config import Config
from bench.data import Dataset, load_fashion_mnist
from bench.imagefolder import load_image_folder
from bench.errors import ConfigError, exception_line
from bench.measure import usable_cores


def load_dataset(config: Config, data_dir: str = "") -> Dataset:
    d = config.data
    if d.dataset == "imagefolder":
        return load_image_folder(data_dir or d.data_dir, val_size=d.val_size, seed=d.seed,
                                 train_limit=d.train_limit, test_limit=d.test_limit)
    return load_fashion_mnist(data_dir or d.data_dir, download=d.download, val_size=d.val_size, seed=d.seed,
                              cache_dir=config.output.cache_dir, train_limit=d.train_limit, test_limit=d.test_limit)


def check_cuda_request(config: Config) -> None:
    """device = 'cuda' where none of the chosen runtimes can use CUDA: every row would be skipped, so stop now
    ('auto' is the setting that means "CUDA where present")."""
    from bench.runtimes import RUNTIMES, cuda_reason

    if config.benchmark.device != "cuda":
        return
    used = [runtime for runtime in config.benchmark.runtimes  # a runtime with no exported format to run makes no row
            if any(fmt in RUNTIMES[runtime].formats for fmt in config.export.formats)]
    reasons = {runtime: cuda_reason(runtime) for runtime in used}
    if all(reasons.values()):
        why = "; ".join(f"{runtime}: {reason}" for runtime, reason in reasons.items())
        raise ConfigError(f"[benchmark].device = 'cuda', but no chosen runtime can use CUDA here ({why}); "
                          "use device = 'cpu', or 'auto' for CUDA cells where a GPU is present")


def check_output_folders(config: Config, out_dir: str = "") -> None:
    """The run's folder and the weight cache must be folders (or not exist yet): a file found in their
    place only when the baseline is saved would end the run after its training."""
    for folder, what in ((out_dir or config.output.dir, "cannot create the run folder under"),
                         (config.output.cache_dir, "[output].cache_dir =")):
        path = Path(folder)
        blocking = next((p for p in (path, *path.parents) if p.exists() or p.is_symlink()), None)
        if blocking is not None and not blocking.is_dir():
            raise ConfigError(f"{what} {folder!r}: {blocking} exists but is not a folder")


def check_export_settings(config: Config) -> None:
    """An ONNX opset this torch cannot export would fail every ONNX row (and every TFLite and ONNX
    int8 row, all made from the ONNX file) after all the training."""
    from torch.onnx._constants import ONNX_MAX_OPSET  # noqa: PLC2701 - torch.onnx.export checks against it too

    from compress.chain import parse_chain

    makes_onnx = ({"onnx", "tflite"} & set(config.export.formats)  # or an ONNX quantization pass, made from it
                  or any(call.spec.kind == "onnx" for v in config.variants for call in parse_chain(v.passes)))
    if makes_onnx and config.export.onnx_opset > ONNX_MAX_OPSET:
        raise ConfigError(f"[export].onnx_opset = {config.export.onnx_opset}: torch {torch.__version__} exports ONNX up to "
                          f"opset {ONNX_MAX_OPSET}")


def _build_students(config: Config, dataset: Dataset) -> None:
    """Build every 'module:factory' KD student now, like the baseline: a typo or a factory that fails
    must not surface only after the baseline has trained, leaving a run folder without rows."""
    from bench.models import MODELS, build_model, import_factory
    from compress.chain import parse_chain
    from compress.registry import student_model

    for variant in config.variants:
        for call in parse_chain(variant.passes):
            if call.spec.name == "distill" and (name := student_model(call.params)) and name not in MODELS:
                where = f"[[variants]] {variant.name!r} distill(student={name!r})"
                import_factory(name, where)  # a module that does not import, named as this variant's
                try:
                    student = build_model(name, in_channels=dataset.input_shape[0], num_classes=len(dataset.classes),
                                          width=config.baseline.width * call.params["width"])  # as the pass builds it
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from exc
                _check_forward(student, where, dataset)


def check_baseline_inputs(config: Config, dataset: Dataset, checkpoint: str = "") -> None:
    """Import the model factory and check the checkpoint up front: their errors come before any folder."""
    from bench.checkpoints import load_state_dict_file
    from bench.models import build_model

    model = build_model(config.baseline.model, in_channels=dataset.input_shape[0],
                        num_classes=len(dataset.classes), width=config.baseline.width)
    _build_students(config, dataset)
    if checkpoint := checkpoint or config.baseline.checkpoint:
        load_state_dict_file(checkpoint, model)
    _check_forward(model, f"[baseline].model {config.baseline.model!r}", dataset)


def _check_forward(model: torch.nn.Module, where: str, dataset: Dataset) -> None:
    """One forward pass now: a model that does not fit the data fails here in one line, not mid-training."""
    shape, classes = dataset.input_shape, len(dataset.classes)
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape))
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, the cause is the model/data pairing
        raise ConfigError(f"{where} does not run on this dataset's {'x'.join(map(str, shape))} "
                          f"images: {exception_line(exc)}") from exc  # --debug shows where the user's model failed
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{where} returns {got} for a batch of 2 images; "
                          f"expected logits of shape (2, {classes}) for this dataset's {classes} classes")
    if not out.is_floating_point():  # integer scores have no gradient to train on and no softmax to calibrate
        raise ConfigError(f"{where} returns {str(out.dtype).removeprefix('torch.')} logits; expected floating-point class scores")


def setting_notes(config: Config, dataset: Dataset) -> list[str]:
    """Settings that run, but not as their numbers suggest: said at the start of a run rather than
    left for the results to surprise."""
    notes = []
    limits = (("train_limit", config.data.train_limit, len(dataset.train)), ("test_limit", config.data.test_limit, len(dataset.test)))
    for key, limit, have in limits:
        if limit > have:  # a limit above what the data holds uses all of it
            notes.append(f"[data] {key} = {limit} is more than the {have} images there are: all {have} are used")
    if len(dataset.val) < config.data.val_size:
        notes.append(f"[data] val_size = {config.data.val_size}, but the validation set holds {len(dataset.val)} images "
                     "(at most a fifth of the training images)")
    if not config.variants:
        notes.append("the config has no [[variants]]: only the baseline is measured (a file's [[variants]] replace the built-in ones)")
    if "tflite" in config.export.formats and (why := tflite_unavailable()):  # said now, not only in each skipped row at the end
        notes.append(f"the TFLite rows will be skipped: {why}; or drop 'tflite' from [export] formats")
    cores = usable_cores()
    for key, counts, effect in (("[benchmark] threads", config.benchmark.threads, "its latencies measure threads sharing cores"),
                                ("[benchmark] eval_threads", [config.benchmark.eval_threads], "they share cores"),
                                ("[baseline] threads", [config.baseline.threads], "training threads share cores")):
        if over := [n for n in counts if n > cores]:  # oversubscribed: slower, not faster
            notes.append(f"{key} asks for {', '.join(map(str, over))} threads, more than the {cores} cores this process may "
                         f"use: {effect}")
    return notes
