"""`edgebench explain RUN_DIR`: (re)compute SHAP explanations of an existing run.

Registered by bench.cli.build_parser. Defaults come from the run's own
[explain] config (results.json "config"), so a recomputation matches the run unless told otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench.cli_args import int_at_least, path_arg
from bench.errors import UserError
from bench.results import read_run_document

_SETTINGS = ("per_class", "max_evals", "seed")  # explain_run's own arguments; the other [explain] keys go as extras


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain", help="recompute SHAP explanations, drift and plots of an existing run",
        description="Explain every ok row of a finished run on its deployed artifact (SHAP Partition explainer), "
                    "compare attributions with the baseline (drift), score faithfulness (deletion AUC) and "
                    "write plots to RUN_DIR/explanations/. results.json is updated in place and the report rebuilt.")
    parser.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="a run folder (holds results.json)")
    parser.add_argument("--variant", metavar="NAME", help="explain only this variant's rows (plus the baseline reference)")
    parser.add_argument("--samples", type=int_at_least(1), metavar="N",
                        help="explained test images per class (default: the run's [explain].per_class, or with --variant its explanation set's)")
    parser.add_argument("--max-evals", type=int_at_least(10), metavar="N",
                        help="model evaluations per image (default: the run's [explain].max_evals, or with --variant its explanation set's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(func=_cmd_explain)


def _cmd_explain(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from bench.config import ExplainConfig
    from bench.config_sections import build_section
    from bench.explain_stage import DEFAULTS, explain_run
    from bench.report import write_report
    from bench.rundir import RunLock

    explain_keys = {f.name for f in fields(ExplainConfig)}
    run_dir = Path(args.run_dir)
    document = read_run_document(run_dir)
    source = f"{run_dir / 'results.json'}"
    _check_finished(run_dir, document)
    configured = (document.get("config") or {}).get("explain") or {}  # the schema does not require a config: defaults then
    # a hand-edited setting stops here, not in every row's worker (only [explain]: the rest of a run's
    # config, checked by the rules of the edgebench that ran it, is not used here)
    build_section(ExplainConfig, configured, f"{source} config [explain]")
    settings = {k: configured.get(k, getattr(ExplainConfig(), k)) for k in _SETTINGS}
    extra = {k: configured[k] for k in DEFAULTS if k in configured}  # keys the config may add later
    previous = document.get("explanation_set") or {}
    if args.variant and previous:  # one variant joins the run's existing explanation set: same settings
        settings.update({k: previous[k] for k in _SETTINGS if k in previous})
        extra.update({k: previous[k] for k in ("masker", "batch_size", "flip_gallery", "drift_threshold", "deletion_steps") if k in previous})
    if args.samples is not None:
        settings["per_class"] = args.samples
    if args.max_evals is not None:
        settings["max_evals"] = args.max_evals
    # the settings taken from an earlier explanation set are checked like the config's own
    build_section(ExplainConfig, {k: v for k, v in {**settings, **extra}.items() if k in explain_keys},
                  f"{source} explanation_set [explain]")
    with RunLock(run_dir):
        explain_run(run_dir, document, variant=args.variant, quiet=args.quiet, check_artifacts=True, **settings, **extra)
        html, _ = write_report(run_dir)  # the report shows the explanations: rebuilt with them
    if not args.quiet:
        print_summary(document)
        print(f"\nexplanations: {run_dir / 'explanations'}  ({document['explanation_set'].get('seconds', 0):.0f} s)")
        print(f"report:       {html}")
    return 0


def _check_finished(run_dir: Path, document: dict[str, Any]) -> None:
    """Explanations belong to a finished run: a run still going, stopped or failed has rows to come, and
    its own explain stage would replace these (a file without a status, written by hand, is taken as it is)."""
    from bench.rundir import in_use

    status = document.get("status")
    if status is None or status == "complete":
        return
    if in_use(run_dir):
        raise UserError(f"{run_dir} is still running (another edgebench process holds it); explain it when it has finished")
    raise UserError(f"{run_dir} did not finish (status {status!r}); complete it with `edgebench run --resume {run_dir}` "
                    "(which explains it too unless it was started without explanations), then explain it")


def print_summary(document: dict[str, Any]) -> None:
    """One line per row with an explanation: drift vs the baseline, deletion AUC, time."""
    print(f"\n{'row':58} {'spearman':>8} {'iou10':>6} {'cosine':>6} {'del.auc':>7} {'s/img':>6}  note")
    for row in document["rows"]:
        block = row.get("explanation")
        if not block:
            continue
        name = f"{row['variant']} {row['format']}/{row['precision']} {row['runtime']}"
        if block.get("status") != "ok":
            print(f"{name:58} {'':>8} {'':>6} {'':>6} {'':>7} {'':>6}  failed: {block.get('reason')}")
            continue
        drift = block.get("drift") or {}
        cells = [f"{drift[f'{m}_mean']:.3f}" if f"{m}_mean" in drift else "-" for m in ("spearman", "iou_top10", "cosine")]
        spi = block.get("seconds_per_image")
        note = ("DRIFTED " if drift.get("drifted") else "") + (f"shares {block['shared_from']}" if block.get("shared_from") else "")
        print(f"{name:58} {cells[0]:>8} {cells[1]:>6} {cells[2]:>6} {block['faithfulness']['auc']['mean']:>7.3f} "
              f"{(f'{spi:.2f}' if spi is not None else '-'):>6}  {note}")
