"""`edgebench run`: config -> dataset -> baseline -> variants -> artifacts -> rows -> results.

Each stage is a function from `bench` or `compress`; this module only wires them in the order
of ../shared/DESIGN.md and keeps results.json current after every finished row.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from bench.cells import RunContext, export_artifacts, measure_row, rows_for_artifact
from bench.config import Config
from bench.data import Dataset, load_fashion_mnist, load_image_folder
from bench.environment import environment
from bench.measure import Timing
from bench.results import Row, validate_results
from bench.rundir import RunLock, RunWriter, new_run_id
from bench.summary import print_summary
from bench.train import baseline_model, to_tensor
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


def load_dataset(config: Config, data_dir: str = "") -> Dataset:
    d = config.data
    if d.dataset == "imagefolder":
        return load_image_folder(data_dir or d.data_dir, val_size=d.val_size, seed=d.seed)
    return load_fashion_mnist(data_dir or d.data_dir, download=d.download, val_size=d.val_size, seed=d.seed,
                              cache_dir=config.output.cache_dir, train_limit=d.train_limit, test_limit=d.test_limit)


def _devices(setting: str) -> list[str]:
    return {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cpu", "cuda"]}[setting]


@torch.no_grad()
def reference_logits(variant: Variant, dataset: Dataset, batch: int = 512) -> np.ndarray:
    """In-process torch logits of a variant on the test set: the parity reference of its artifacts."""
    variant.model.eval()
    images = dataset.test.images
    return torch.cat([variant.model(to_tensor(images[i:i + batch], dataset.mean, dataset.std))
                      for i in range(0, len(images), batch)]).numpy()


def run(config: Config, options: RunOptions) -> Path:
    """Run the whole benchmark; returns the run folder. UserError on bad input."""
    started = time.perf_counter()
    torch.set_num_threads(config.baseline.threads or torch.get_num_threads())
    dataset = load_dataset(config, options.data_dir)
    out_root = Path(options.out_dir or config.output.dir)
    run_id = new_run_id(config.digest())
    run_dir = out_root / run_id
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "logs").mkdir()
    _log_to_file(run_dir / "logs" / "run.log")
    with RunLock(run_dir):
        writer = RunWriter(run_dir, {
            "run_id": run_id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "status": "running", "quick": options.quick, "config": config.to_dict(), "environment": environment(),
            "dataset": {"name": dataset.name, "source": dataset.source, "train_size": len(dataset.train),
                        "val_size": len(dataset.val), "test_size": len(dataset.test), "classes": list(dataset.classes),
                        "mean": list(dataset.mean), "std": list(dataset.std)},
            "baseline": "baseline"})
        _say(options, f"run {run_id}: {len(dataset.train)} train / {len(dataset.val)} val / {len(dataset.test)} test images from {dataset.source}")
        stage = time.perf_counter()
        trained = baseline_model(config.baseline, dataset, config.output.cache_dir, checkpoint=options.checkpoint, quiet=options.quiet)
        _say(options, f"baseline {config.baseline.model}: {trained.info['source']}, val top-1 {trained.info['val_top1']:.4f}")
        writer.update(baseline_info={k: v for k, v in trained.info.items() if k != "losses"},
                      stages={"baseline_s": round(time.perf_counter() - stage, 1)})
        stage = time.perf_counter()
        variants = build_variants(config, dataset, trained.model, trained.info.get("cache_key", "checkpoint"),
                                  config.output.cache_dir, quiet=options.quiet,
                                  on_step=lambda text: _say(options, f"  pass {text}"))
        writer.document["stages"]["variants_s"] = round(time.perf_counter() - stage, 1)
        ctx = RunContext(config, dataset, run_dir, _save_images(run_dir, dataset), Timing.from_config(config.benchmark, options.quick),
                         _devices(config.benchmark.device))
        stage = time.perf_counter()
        _measure_variants(variants, ctx, writer, options)
        writer.document["stages"]["measure_s"] = round(time.perf_counter() - stage, 1)
        _finish(writer, run_dir, started, options)
    return run_dir


def _measure_variants(variants: list[Variant], ctx: RunContext, writer: RunWriter, options: RunOptions) -> None:
    calibration_raw = ctx.dataset.train.images  # each quantizer takes the first N it is configured for
    with tqdm(total=len(variants), desc="variants", unit="variant", disable=options.quiet) as bar:
        for variant in variants:
            bar.set_postfix_str(variant.name)
            reference = reference_logits(variant, ctx.dataset)
            if variant.is_baseline:
                ctx.baseline_predictions = reference.argmax(1)
            for artifact in export_artifacts(variant, ctx, calibration_raw):
                for row in rows_for_artifact(variant, artifact, ctx):
                    if row.status == "ok":
                        bar.set_postfix_str(f"{variant.name} {row.format}/{row.precision} on {row.runtime}")
                        measure_row(row, variant, reference, ctx)
                    writer.add_row(row)
            bar.update(1)


def _finish(writer: RunWriter, run_dir: Path, started: float, options: RunOptions) -> None:
    writer.document["stages"]["total_s"] = round(time.perf_counter() - started, 1)
    writer.update(status="complete", finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    problems = validate_results(writer.document)
    if problems:
        log.error("results.json does not validate against the schema: %s", problems[:3])
    if not options.quiet:
        print_summary(writer.document)
        print(f"\nresults: {run_dir / 'results.json'}  ({writer.document['stages']['total_s']:.0f} s)")


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


def _log_to_file(path: Path) -> None:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def rows_of(document: dict[str, Any]) -> list[Row]:
    return [Row(**{k: v for k, v in r.items() if k in Row.__dataclass_fields__}) for r in document["rows"]]
