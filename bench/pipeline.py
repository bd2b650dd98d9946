"""`edgebench run`: config -> dataset -> baseline -> variants -> artifacts -> rows -> results.

Each stage is a function from `bench` or `compress`; this module only wires them in the order
of ../shared/DESIGN.md and keeps results.json current after every finished row.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm

from bench.cells import RunContext, export_artifacts, measure_row, rows_for_artifact
from bench.config import Config
from bench.data import Dataset
from bench.environment import environment
from bench.errors import UserError, exception_line
from bench.measure import Paired, Timing
from bench.preflight import (check_baseline_inputs, check_cuda_request, check_export_settings, check_output_folders, load_dataset,
                             setting_notes)
from bench.progress import progress_bar
from bench.report_notes import untrained_baseline_note
from bench.results import Row, row_key, row_name
from bench.results_schema import validate_results
from bench.resume import check_same_data, finished_variants, load_results, measured_files, record_digests, still_valid
from bench.robustness_stage import build_sets
from bench.rundir import RunLock, RunWriter, create_run_dir
from bench.summary import print_summary
from bench.train import baseline_model, resume_precision_error, to_tensor
from bench.variants import Variant, build_variants

log = logging.getLogger("edgebench")


@dataclass
class RunOptions:
    quick: bool = False
    checkpoint: str = ""
    data_dir: str = ""
    explain: bool | None = None  # None: as [explain].enabled says
    out_dir: str = ""
    quiet: bool = False
    resume: str = ""  # an interrupted run folder to continue


def _devices(setting: str) -> list[str]:
    return {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu", "cuda"]}[setting]


@torch.no_grad()
def reference_logits(variant: Variant, dataset: Dataset, batch: int = 512) -> np.ndarray:
    """In-process torch logits of a variant on the test set: the parity reference of its artifacts."""
    assert variant.model is not None, f"{variant.name} failed: it has no model"
    variant.model.eval()
    images = dataset.test.images
    return torch.cat([variant.model(to_tensor(images[i:i + batch], dataset.mean, dataset.std))
                      for i in range(0, len(images), batch)]).numpy()


def run(config: Config, options: RunOptions) -> Path:
    """Run the whole benchmark (or resume one); returns the run folder. UserError on bad input.

    With `quiet`, standard output carries the results.json path alone, for `$(edgebench run --quiet)`:
    whatever else writes to it during the run (a user model's print()) goes to standard error."""
    if not options.quiet:
        return _run(config, options)
    with contextlib.redirect_stdout(sys.stderr):
        run_dir = _run(config, options)
    print(run_dir / "results.json")
    return run_dir


def _run(config: Config, options: RunOptions) -> Path:
    started = time.perf_counter()
    torch.set_num_threads(config.baseline.threads or torch.get_num_threads())
    if _explain_enabled(config, options):
        from bench.explain_stage import missing_dependencies
        if missing := missing_dependencies():
            raise UserError(f"explanations need {', '.join(missing)} (pip install 'edgebench[explain]'), or pass --no-explain")
    check_cuda_request(config)
    check_export_settings(config)
    check_output_folders(config, options.out_dir)
    dataset = load_dataset(config, options.data_dir)
    check_baseline_inputs(config, dataset, options.checkpoint)
    if options.resume:
        run_dir = Path(options.resume)
    else:  # the folder is created only once config, data, model and checkpoint are known to be good
        run_dir = create_run_dir(Path(options.out_dir or config.output.dir), config.digest())
    (run_dir / "logs").mkdir(exist_ok=True)
    with _logging_to(run_dir / "logs" / "run.log"), RunLock(run_dir):
        document = load_results(run_dir) if options.resume else _new_document(run_dir.name, config, dataset, options)
        if options.resume:  # its new rows must be trained and measured on the images it started with
            check_same_data(document, dataset.digests, dataset.source)
        writer = RunWriter(run_dir, document)
        writer.update(status="running")
        try:
            _run_stages(config, dataset, run_dir, writer, options)
        except KeyboardInterrupt as exc:
            writer.update(status="incomplete")
            print(f"\nedgebench: interrupted; {len(writer.rows)} finished rows are saved. Resume with:\n"
                  f"  edgebench run --resume {run_dir}", file=sys.stderr)
            exc.announced = True  # type: ignore[attr-defined]  # the CLI adds no second "interrupted"
            raise
        except Exception as exc:  # the CLI prints the error; the folder says the run stopped on it, not "running"
            writer.update(status="failed", error=exception_line(exc, 500))
            raise
        _finish(writer, run_dir, started, options)
    return run_dir


def _new_document(run_id: str, config: Config, dataset: Dataset, options: RunOptions) -> dict[str, Any]:
    return {"run_id": run_id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": "running", "quick": options.quick, "config": config.to_dict(), "environment": environment(),
            "dataset": {"name": dataset.name, "source": dataset.source, "train_size": len(dataset.train),
                        "val_size": len(dataset.val), "test_size": len(dataset.test), "classes": list(dataset.classes),
                        "mean": list(dataset.mean), "std": list(dataset.std), "digests": dataset.digests},
            "baseline": "baseline", "stages": {}, "variants_done": [],
            # what --resume needs to rebuild the same baseline from the same data
            "run_options": {"checkpoint": options.checkpoint, "data_dir": options.data_dir, "explain": options.explain}}


def _run_stages(config: Config, dataset: Dataset, run_dir: Path, writer: RunWriter, options: RunOptions) -> None:
    stages = writer.document.setdefault("stages", {})
    resumed = " (resumed)" if options.resume else ""
    _say(options, f"run {run_dir.name}{resumed}: {len(dataset.train)} train / {len(dataset.val)} val / {len(dataset.test)} test images from {dataset.source}")
    for note in setting_notes(config, dataset):
        _say(options, f"note: {note}")
    recorded = writer.document.get("baseline_info")  # a resumed run's
    if recorded and (why := resume_precision_error(recorded, config.baseline.train_precision)):
        raise UserError(f"cannot resume {run_dir}: {why}")
    stage = time.perf_counter()
    trained = baseline_model(config.baseline, dataset, config.output.cache_dir, checkpoint=options.checkpoint, quiet=options.quiet)
    source = trained.info["source"]
    if source in ("trained", "cache") and config.baseline.epochs == 0:
        source = f"random initialisation ([baseline] epochs = 0{', from the cache' if source == 'cache' else ''})"
    elif trained.info["train_precision"] == "bf16":  # it changes the weights: say so (auto picks it on CPUs with native bf16)
        source += " (passes train in bf16 autocast)" if source == "checkpoint" else " (bf16 autocast)"
    _say(options, f"baseline {config.baseline.model}: {source}, val top-1 {trained.info['val_top1']:.4f}")
    if untrained := untrained_baseline_note(trained.info["val_top1"], len(dataset.classes)):
        _say(options, f"note: {untrained}")
    stages["baseline_s"] = round(time.perf_counter() - stage, 1)
    previous = (recorded or {}).get("cache_key")
    if previous and previous != trained.info["cache_key"]:
        raise UserError(f"cannot resume {run_dir}: its baseline ({previous}) differs from the one rebuilt now "
                        f"({trained.info['cache_key']}); was the checkpoint, the data, or edgebench's training code "
                        "(or the torch, torchvision or NumPy version) changed since it started?")
    writer.update(baseline_info={k: v for k, v in trained.info.items() if k != "losses"})
    stage = time.perf_counter()
    variants = build_variants(config, dataset, trained.model, trained.info["cache_key"], config.output.cache_dir,
                              quiet=options.quiet, on_step=lambda text: _say(options, f"  {text}"))
    stages["variants_s"] = round(time.perf_counter() - stage, 1)
    writer.update(variants={v.name: {"lineage": v.lineage, **v.info} for v in variants})
    robustness = build_sets(config.benchmark, dataset, trained.model, run_dir, options.quick, seed=config.baseline.seed)
    if robustness:
        writer.update(robustness_sets={**robustness.settings, "sets": list(robustness.spans)})
    ctx = RunContext(config, dataset, run_dir, _save_images(run_dir, dataset), Timing.from_config(config.benchmark, options.quick),
                     _devices(config.benchmark.device), robustness=robustness,
                     # a resumed run's measured baseline torch row; else the row sets it once measured (bench.cells.measure_row)
                     baseline_robustness=next((r.get("robustness") for r in writer.rows
                                               if r["variant"] == "baseline" and r["format"] == "torch"), None),
                     paired=Paired.from_config(config.benchmark, options.quick))
    stage = time.perf_counter()
    _measure_variants(variants, ctx, writer, options)
    stages["measure_s"] = round(time.perf_counter() - stage, 1)
    for hook in post_run_hooks(config, options):
        stage = time.perf_counter()
        hook(run_dir, writer, options)
        stages[f"{hook.__name__}_s"] = round(time.perf_counter() - stage, 1)


def _measure_variants(variants: list[Variant], ctx: RunContext, writer: RunWriter, options: RunOptions) -> None:
    calibration_raw = ctx.dataset.train.images  # each quantizer takes the first N it is configured for
    done_variants = finished_variants(writer.document, ctx.run_dir)
    baseline_logits = reference_logits(variants[0], ctx.dataset)
    ctx.baseline_predictions = baseline_logits.argmax(1)
    for done in writer.rows:  # a resumed run times its remaining rows against the finished baseline rows
        if done["variant"] == variants[0].name:
            ctx.note_reference(done)
    with progress_bar(total=len(variants), desc="variants", unit="variant", quiet=options.quiet) as bar:
        for variant in variants:
            bar.update(0)
            if variant.name not in done_variants:  # a resumed run skips finished variants entirely
                bar.set_postfix_str(variant.name, refresh=False)
                # a variant whose passes failed has no model: its rows are export_failed, nothing is measured
                reference = (baseline_logits if variant is variants[0]
                             else None if variant.failed else reference_logits(variant, ctx.dataset))
                rows, kept = _export_variant(variant, ctx, writer, calibration_raw)
                for row in rows:
                    if row.key not in kept:
                        _measure_and_add(row, variant, reference, ctx, writer, bar)
                if not variant.failed:  # a resumed run tries a failed pass again (it may have been out of memory)
                    writer.document["variants_done"].append(variant.name)
                writer.flush()
            bar.update(1)


def _export_variant(variant: Variant, ctx: RunContext, writer: RunWriter,
                    calibration_raw: np.ndarray) -> tuple[list[Row], set[tuple[str, ...]]]:
    """Export a variant's artifacts: its rows, and the keys of the finished rows (of a resumed run)
    that stay. A finished row stays only if its cell is still made from the same file, byte for byte
    (else its numbers would describe another file); the other finished rows are dropped."""
    measured = measured_files(writer.rows, variant.name, ctx.run_dir)  # before the export rewrites the files
    started = time.perf_counter()
    rows = [row for artifact in export_artifacts(variant, ctx, calibration_raw) for row in rows_for_artifact(variant, artifact, ctx)]
    log.info("%s: exported in %.1f s", variant.name, time.perf_counter() - started)
    kept = {row.key for row in rows if row.key in measured and still_valid(*measured[row.key], row, ctx.run_dir)}
    record_digests(writer.rows, rows, kept)
    made = {row.key for row in rows}
    for stale in writer.drop_rows(variant.name, keep=kept):
        # a row without an artifact is rewritten silently (nothing to measure); a run resumed by a
        # newer edgebench may also hold rows for cells this one no longer makes (another row layout)
        if row_key(stale) not in made:
            log.warning("resume: dropped %s, a row this edgebench no longer makes", row_name(stale))
        elif stale.get("artifact"):
            log.warning("resume: %s is measured again: exported again, its artifact is not the file it "
                        "measured (changed, moved or not made)", row_name(stale))
        ctx.forget_reference(stale)
    return rows, kept


def _measure_and_add(row: Row, variant: Variant, reference: np.ndarray | None, ctx: RunContext, writer: RunWriter,
                     bar: Any) -> None:
    """Measure an exported row (a failed or skipped one is recorded as it is) and write it."""
    if row.status == "ok":
        bar.set_postfix_str(f"{variant.name} {row.format}/{row.precision} on {row.runtime}", refresh=False)
        started = time.perf_counter()
        assert reference is not None  # a failed variant's rows are all export_failed
        measure_row(row, variant, reference, ctx)
        log.info("%s: measured in %.1f s", row_name(row.to_dict()), time.perf_counter() - started)
    writer.add_row(row)
    if variant.is_baseline:
        ctx.note_reference(row.to_dict())


def post_run_hooks(config: Config, options: RunOptions) -> list[Callable[[Path, RunWriter, RunOptions], None]]:
    """Stages that work from results.json alone, run after the measurements: the explanations when
    enabled (the report is written by the run's end either way)."""
    hooks: list[Callable[[Path, RunWriter, RunOptions], None]] = []
    if _explain_enabled(config, options):
        hooks.append(explain_stage)
    return hooks


def _explain_enabled(config: Config, options: RunOptions) -> bool:
    return options.explain if options.explain is not None else config.explain.enabled


def explain_stage(run_dir: Path, writer: RunWriter, options: RunOptions) -> None:
    from bench.explain_stage import explain_run

    cfg = {k: v for k, v in writer.document["config"]["explain"].items() if k != "enabled"}
    explain_run(run_dir, writer.document, **cfg, quiet=options.quiet)
    writer.flush()


def _finish(writer: RunWriter, run_dir: Path, started: float, options: RunOptions) -> None:
    writer.document["stages"]["total_s"] = round(time.perf_counter() - started, 1)
    writer.update(status="complete", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    problems = validate_results(writer.document)
    if problems:
        log.error("results.json does not validate against the schema: %s", problems[:3])
    from bench.report import write_report

    html, markdown = write_report(run_dir)
    if not options.quiet:  # quiet: run() prints the one line a script needs, where the run went
        print_summary(writer.document)
        print(f"\nresults: {run_dir / 'results.json'}  ({writer.document['stages']['total_s']:.0f} s)")
        print(f"report:  {html}\n         {markdown}")


def _save_images(run_dir: Path, dataset: Dataset) -> Path:
    """The raw uint8 test images every worker reads (memory-mapped, never pickled)."""
    path = run_dir / "work" / "test_images.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, dataset.test.images, allow_pickle=False)
    np.save(run_dir / "work" / "test_labels.npy", dataset.test.labels, allow_pickle=False)
    return path


def _say(options: RunOptions, text: str) -> None:
    log.info(text)
    if not options.quiet:
        tqdm.write(text)


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """The run's log lines go to its run.log while it runs, and only then: a second run in the same
    process (a script, the tests) must not write into the first one's log."""
    handler, level = logging.FileHandler(path), log.level
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()
        log.setLevel(level)
