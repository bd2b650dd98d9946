"""Turn one variant into its result rows: export each format, measure each runtime, validate.

A cell is (variant, format, precision, runtime, device). Exports are shared by the runtimes of a
format; every failure becomes a row with a status and a reason, and the run goes on.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import runtimes
from bench.config import Config
from bench.data import Dataset
from bench.errors import exception_line
from bench.export import ExportError, export_onnx, export_torch
from bench.inputs import make_input_spec, prepare_input
from bench.measure import Paired, Timing, WorkerFailed, accuracy_block, apply_worker_result, file_facts, parity_block, run_worker
from bench.results import Row, row_name
from bench.robustness_stage import RobustnessSets, calibration_block, robustness_block, whitebox_block
from bench.validation import parity_tolerance, validate_row
from bench.variants import Variant
from compress.chain import PassCall

log = logging.getLogger("edgebench")


@dataclass
class Artifact:
    """An exported file (relative to the run dir) and how to feed it; or why it could not be made."""

    format: str
    precision: str
    path: str | None
    input_spec: dict[str, Any] | None
    error: str | None = None
    info: dict[str, Any] | None = None
    skip: str | None = None  # why this cell does not apply (a skipped row, not a failure)
    by_artifact_pass: bool = False  # made by the variant's ONNX quantization pass (not just from its model)


@dataclass
class RunContext:
    """What every cell of a run shares. Built whole before the first variant; only the baseline's
    results change it afterwards, because later rows are compared with them: baseline_predictions
    (agreement), baseline_robustness (relative robustness) and paired_references (paired timing).
    The baseline variant is measured first, and its torch row first within it, so they are set
    before any row needs them."""

    config: Config
    dataset: Dataset
    run_dir: Path
    images_file: Path
    timing: Timing
    devices: list[str]
    baseline_predictions: np.ndarray | None = None
    robustness: RobustnessSets | None = None
    baseline_robustness: dict[str, Any] | None = None  # the baseline torch row's block, for relative numbers
    paired: Paired | None = None
    # (runtime, device) -> the baseline's ok fp32 row there, as a dict: what every later row on that
    # runtime is timed against, interleaved (row.speedup_paired)
    paired_references: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def note_reference(self, row: dict[str, Any]) -> None:
        """Remember a finished baseline row as its runtime's paired reference (the first one wins)."""
        if row.get("status") == "ok" and row.get("precision") == "fp32" and row.get("artifact"):
            self.paired_references.setdefault((row["runtime"], row.get("device", "cpu")), row)

    def forget_reference(self, row: dict[str, Any]) -> None:
        """A dropped baseline row (a resumed run measures it again) is no longer a reference."""
        key = (row.get("runtime"), row.get("device", "cpu"))
        if key in self.paired_references and row_name(self.paired_references[key]) == row_name(row):
            del self.paired_references[key]

    def paired_reference(self, row: Row) -> dict[str, Any] | None:
        """The baseline row `row` is timed against; None for the reference itself or when there is none."""
        reference = self.paired_references.get((row.runtime, row.device))
        return None if reference is None or row_name(reference) == row_name(row.to_dict()) else reference


def _rel(ctx: RunContext, path: Path) -> str:
    return str(path.relative_to(ctx.run_dir))


def export_artifacts(variant: Variant, ctx: RunContext, calibration_raw: np.ndarray) -> list[Artifact]:
    """Every artifact the config asks for, for one variant, in a stable order."""
    if variant.failed:
        return _unmade_artifacts(variant, ctx)
    cfg, shape = ctx.config, ctx.dataset.input_shape
    folder = ctx.run_dir / "artifacts" / variant.name
    folder.mkdir(parents=True, exist_ok=True)
    nchw = make_input_spec(shape, ctx.dataset.mean, ctx.dataset.std)
    artifacts: list[Artifact] = []
    # A chain ending in an ONNX quantization pass (prune -> distil -> quantize.static) also gets rows for
    # the model it quantizes in every format: TFLite users deploy that model with TFLite's own int8,
    # and its fp32 rows show what the quantization added. An ONNX quantization of the unchanged
    # baseline gets only its ONNX row: the other rows of its model are the baseline's.
    quantizes_baseline = variant.artifact_pass is not None and not variant.changes_model
    onnx_needed = "onnx" in cfg.export.formats or "tflite" in cfg.export.formats or variant.artifact_pass
    if "torch" in cfg.export.formats and not quantizes_baseline:
        artifacts.append(_try(lambda: export_torch(variant.model, folder / f"{variant.name}.pt2", shape), "torch", "fp32", ctx, nchw, variant.name))
    onnx_fp32 = _try(lambda: export_onnx(variant.model, folder / f"{variant.name}.fp32.onnx", shape, cfg.export.onnx_opset), "onnx", "fp32", ctx, nchw, variant.name) if onnx_needed else None
    if "onnx" in cfg.export.formats and onnx_fp32 and not quantizes_baseline:
        artifacts.append(onnx_fp32)
    if variant.artifact_pass:
        artifacts.append(_quantize_onnx(variant, onnx_fp32, folder, ctx, calibration_raw, nchw))
    if variant.artifact_pass and quantizes_baseline:
        why = (f"{variant.artifact_pass.spec.name} of the unchanged baseline makes an ONNX artifact only; "
               "the baseline's rows are this model's rows in the other formats and precisions")
        artifacts += [Artifact(fmt, "n/a", None, None, skip=why) for fmt in cfg.export.formats if fmt != "onnx"]
    elif "tflite" in cfg.export.formats:
        artifacts.extend(_tflite(variant, onnx_fp32, folder, ctx, calibration_raw))
    return artifacts


def _unmade_artifacts(variant: Variant, ctx: RunContext) -> list[Artifact]:
    """The cells of a variant whose passes failed, each carrying the pass's error: its rows are
    export_failed rows that say why, not a silent gap in the table."""
    cfg = ctx.config
    artifacts = [Artifact("torch", "fp32", None, None, error=variant.error)] if "torch" in cfg.export.formats else []
    if "onnx" in cfg.export.formats:
        artifacts.append(Artifact("onnx", "fp32", None, None, error=variant.error))
    if variant.artifact_pass:
        artifacts.append(Artifact("onnx", _quantized_precision(variant.artifact_pass), None, None, error=variant.error,
                                  by_artifact_pass=True))
    if "tflite" in cfg.export.formats:  # skipped, as for every variant, when this install cannot convert
        missing = tflite_unavailable()
        artifacts += [Artifact("tflite", p, None, None, error=None if missing else variant.error, skip=missing)
                      for p in cfg.export.tflite_precisions]
    return artifacts


def _quantized_precision(call: PassCall) -> str:
    """The precision of the ONNX artifact an ONNX quantization pass makes: quantize.static -> int8-static."""
    return "int8-" + call.spec.name.split(".")[1]


def tflite_unavailable() -> str | None:
    """Why this install makes no TFLite files (a capability of the install, not a failure), or None."""
    # ai_edge_litert too: the converted file is read back with it (input quantization, graph counts)
    missing = [module for module in ("onnx2tf", "tensorflow", "ai_edge_litert") if importlib.util.find_spec(module) is None]
    if missing:
        return f"{' and '.join(missing)} not installed, so no TFLite conversion (pip install 'edgebench[tflite]')"
    return None


def _try(make: Callable[[], Path], fmt: str, precision: str, ctx: RunContext, spec: dict[str, Any], variant: str) -> Artifact:
    try:
        return Artifact(fmt, precision, _rel(ctx, make()), spec)
    except ExportError as exc:
        log.warning("%s: %s %s export failed", variant, fmt, precision, exc_info=True)  # the converter's stack, in run.log
        return Artifact(fmt, precision, None, spec, error=str(exc))


def _quantize_onnx(variant: Variant, source: Artifact | None, folder: Path, ctx: RunContext,
                   calibration_raw: np.ndarray, spec: dict[str, Any]) -> Artifact:
    call = variant.artifact_pass
    assert call is not None
    precision = _quantized_precision(call)
    if source is None or source.path is None:
        return Artifact("onnx", precision, None, spec, error=f"no fp32 ONNX to quantize: {source.error if source else 'not exported'}",
                        by_artifact_pass=True)
    from compress.registry import resolve

    out = folder / f"{variant.name}.{precision}.onnx"
    # static quantization calibrates on its own images=N; dynamic quantization needs none
    calibration = prepare_input(calibration_raw[: call.params["images"]], spec) if "images" in call.params else None
    try:
        info = resolve(call.spec)(ctx.run_dir / source.path, out, call.params, calibration)
    except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises assorted types; each means "export failed"
        log.warning("%s: %s failed", variant.name, call.spec.name, exc_info=True)
        return Artifact("onnx", precision, None, spec, error=f"{call.spec.name} failed: {exception_line(exc)}",
                        by_artifact_pass=True)
    return Artifact("onnx", precision, _rel(ctx, out), spec, info={"quantization": {**call.params, **(info or {})}},
                    by_artifact_pass=True)


def _tflite(variant: Variant, source: Artifact | None, folder: Path, ctx: RunContext,
            calibration_raw: np.ndarray) -> list[Artifact]:
    precisions = ctx.config.export.tflite_precisions
    nhwc = make_input_spec(ctx.dataset.input_shape, ctx.dataset.mean, ctx.dataset.std, layout="NHWC")
    if why := tflite_unavailable():
        return [Artifact("tflite", p, None, nhwc, skip=why) for p in precisions]
    if source is None or source.path is None:
        reason = f"no fp32 ONNX to convert: {source.error if source else 'not exported'}"
        return [Artifact("tflite", p, None, nhwc, error=reason) for p in precisions]
    from bench.export_tflite import convert_to_tflite  # tensorflow/onnx2tf only when TFLite is asked for

    results = convert_to_tflite(ctx.run_dir / source.path, folder, precisions,
                                prepare_input(calibration_raw[: ctx.config.export.calibration_images], make_input_spec(ctx.dataset.input_shape, ctx.dataset.mean, ctx.dataset.std)),
                                nhwc, log_file=ctx.run_dir / "logs" / f"tflite-{variant.name}.log")
    artifacts = []
    for precision in precisions:
        outcome = results[precision]
        if isinstance(outcome, ExportError):
            artifacts.append(Artifact("tflite", precision, None, nhwc, error=str(outcome)))
        else:
            path, spec, info = outcome
            artifacts.append(Artifact("tflite", precision, _rel(ctx, path), spec, info=info))
    return artifacts


def rows_for_artifact(variant: Variant, artifact: Artifact, ctx: RunContext) -> list[Row]:
    """One row per runtime and device that runs this artifact's format (skipped rows included)."""
    rows = []
    for spec in runtimes.runtime_for_format(artifact.format, ctx.config.benchmark.runtimes):
        for device in ctx.devices:
            row = Row(variant.name, _row_lineage(variant, artifact), artifact.format, artifact.precision, spec.name, device,
                      artifact=artifact.path, input_spec=artifact.input_spec,
                      params=variant.info.get("params"), macs=variant.info.get("macs"))
            row.compression = _compression_block(variant, artifact)
            if artifact.path:
                row.size_bytes, row.size_gzip_bytes, row.artifact_sha256 = file_facts(ctx.run_dir / artifact.path)
            if artifact.skip:
                row.fail("skipped", artifact.skip)
            elif artifact.error:
                row.fail("export_failed", artifact.error)
            elif device not in spec.devices:
                row.fail("skipped", f"{spec.name} does not run on {device} in edgebench")
            elif device.startswith("cuda") and (why := runtimes.cuda_reason(spec.name)):
                row.fail("skipped", why)
            elif not runtimes.is_installed(spec):
                row.fail("skipped", f"{spec.module} is not installed (pip install 'edgebench[tflite]')")
            rows.append(row)
    return rows


def _row_lineage(variant: Variant, artifact: Artifact) -> list[str]:
    """A chain's artifacts made from its model, not by its ONNX quantization pass (the last pass of
    the chain), carry the model passes only: the TFLite int8 of prune -> quantize.static was not made
    by quantize.static."""
    if variant.artifact_pass and variant.changes_model and not artifact.by_artifact_pass:
        return variant.lineage[:-1]
    return variant.lineage


def _compression_block(variant: Variant, artifact: Artifact) -> dict[str, Any] | None:
    block = {k: v for k, v in variant.info.items() if k not in ("macs", "params")}
    if artifact.info:
        block.update(artifact.info)
    return block or None


def measure_row(row: Row, variant: Variant, reference_logits: np.ndarray, ctx: RunContext) -> None:
    """Run the worker, then fill accuracy, parity and the validation verdict into the row."""
    cfg = ctx.config
    sets = ctx.robustness
    try:
        reference = ctx.paired_reference(row)
        if reference is None and ctx.paired and ctx.paired.rounds and not (variant.is_baseline and row.precision == "fp32"):
            row.notes.append(f"no paired speed-up: the baseline has no ok fp32 row on {row.runtime}/{row.device} measured before this one")
        result = run_worker(row, ctx.run_dir, ctx.images_file, cfg.benchmark, ctx.timing, cfg.benchmark.throughput_batch,
                            extra_images=sets.images_file if sets else None, paired=ctx.paired, reference=reference)
    except WorkerFailed as exc:
        row.fail("run_failed", str(exc))
        return
    logits = apply_worker_result(row, result, ctx.run_dir)
    log.info("%s: worker %s", row.slug, " ".join(f"{k} {v:.1f} s" for k, v in result.get("phase_seconds", {}).items()))
    labels = ctx.dataset.test.labels
    row.accuracy = accuracy_block(logits, labels, len(ctx.dataset.classes), ctx.baseline_predictions)
    if row.device == "cpu":  # how the predictions were computed (not timed)
        row.accuracy["threads"] = result["eval_threads"]
    n = min(cfg.export.parity_images, len(labels))
    row.parity = parity_block(logits, reference_logits, f"torch eager ({variant.name}, fp32)", n)
    row.parity["tolerance"] = parity_tolerance(cfg.export.parity_tolerance, reference_logits[:n])
    row.calibration = calibration_block(logits, labels)
    if sets:
        extra = np.load(ctx.run_dir / "logits" / f"{row.slug}__robustness.npy", allow_pickle=False)
        row.robustness = robustness_block(extra, row.accuracy["top1"], sets, ctx.baseline_robustness)
        if row.format == "torch":
            row.robustness["adversarial_whitebox_top1"] = whitebox_block(variant.model, ctx.dataset, cfg.benchmark, sets)
        if variant.is_baseline and row.format == "torch":
            ctx.baseline_robustness = row.robustness
    validate_row(row, reference_logits, labels, cfg)
