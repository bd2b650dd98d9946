"""`edgebench report RUN_DIR` and `edgebench compare RUN_A RUN_B`, registered by bench.cli.

Both read results.json (and the files it references) only, so they work on a copied or
archived run folder without the model files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.cli_args import path_arg
from bench.compare import THRESHOLD_HELP, Comparison, Pair, compare_runs, parse_threshold
from bench.errors import UserError
from bench.report_table import md_cell
from bench.results import KEY_FIELDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` and `compare` sub-commands to the edgebench parser."""
    report = subparsers.add_parser("report", help="(re)generate report.html, report.md and plots/ of a run",
                                   description="Write RUN_DIR/report.html (self-contained, offline), report.md and the "
                                               "charts in RUN_DIR/plots/ from RUN_DIR/results.json (and the raw latency "
                                               "samples beside it).")
    report.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="a run folder (results/<run-id>)")
    report.set_defaults(func=_cmd_report)

    compare = subparsers.add_parser(
        "compare", help="compare two runs row by row; --fail-on for CI gates",
        description="Match the rows of two runs on (variant, format, precision, runtime, device) and show the "
                    "changes in top-1, batch-1 latency (with a bootstrap 95% CI from the raw samples) and size. "
                    "Rows in one run only and rows whose status changed are listed.",
        epilog=THRESHOLD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    compare.add_argument("run_a", type=path_arg, metavar="RUN_A", help="the reference run folder")
    compare.add_argument("run_b", type=path_arg, metavar="RUN_B", help="the run to judge against RUN_A")
    compare.add_argument("--fail-on", metavar="EXPR", action="append", default=[],
                         help="threshold such as p50:+10%%, top1:-0.5pt, size:+5%% (repeatable; see below)")
    compare.add_argument("--format", choices=("text", "md", "json"), default="text", help="output format (default: text)")
    compare.add_argument("--strict", action="store_true", help="also exit 1 when a row ok in A is missing or not ok in B, or lacks a metric a --fail-on gates")
    compare.add_argument("--resamples", type=int, default=2000, metavar="N", help="bootstrap resamples (default: 2000)")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    compare.set_defaults(func=_cmd_compare)


def _cmd_report(args: argparse.Namespace) -> int:
    from bench.report import write_report

    from bench.results import read_run_document

    document = read_run_document(args.run_dir, check_schema=True)
    html_path, md_path = write_report(Path(args.run_dir), document=document)
    print(f"report: {html_path}\n        {md_path}")
    if (status := document.get("status")) not in (None, "complete"):
        print(f"note: the run is {status!r}, not complete: the report shows the rows finished so far", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    thresholds = [parse_threshold(expr) for expr in args.fail_on]  # validate before any work
    if args.resamples < 100:
        raise UserError(f"--resamples {args.resamples} is too few for a 95% interval (use at least 100)")
    if args.resamples > 100_000:  # each resample takes a quantile of every row's samples: memory and time grow with it
        raise UserError(f"--resamples {args.resamples} is more than a 95% interval needs (use at most 100000)")
    if args.seed < 0:  # numpy's generators take non-negative seeds only
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    comparison = compare_runs(Path(args.run_a), Path(args.run_b), thresholds, strict=args.strict,
                              resamples=args.resamples, seed=args.seed)
    print(render(comparison, args.format))
    return comparison.exit_code


def _pct(a: float | None, b: float | None) -> str:
    return f"{(b / a - 1) * 100:+.1f}%" if a and b is not None else "-"


def table_cells(pair: Pair) -> list[str]:
    """row | status | top-1 A -> B (Δpt) | p50 A -> B | ratio [CI] | verdict | size change."""
    status_a = pair.a.get("status") if pair.a else "-"
    status_b = pair.b.get("status") if pair.b else "-"
    top1 = pair.value("top1")
    lat = pair.latency.get("p50")
    size = pair.value("size")
    return [
        pair.label,
        str(status_a) if status_a == status_b else f"{status_a} -> {status_b}",
        f"{top1[0] * 100:.2f} -> {top1[1] * 100:.2f} ({(top1[1] - top1[0]) * 100:+.2f})" if top1 else "-",
        f"{_ms(lat.a_ms)} -> {_ms(lat.b_ms)}" if lat else "-",
        (f"×{lat.ratio:.3f}" + (f" [{lat.ci[0]:.3f}, {lat.ci[1]:.3f}]" if lat.ci else "")) if lat else "-",
        lat.verdict if lat else "-",
        _pct(*size) if size else "-",
    ]


def _ms(value: float) -> str:
    """Milliseconds with four significant digits, trailing zeros kept (0.3540, 0.02750): columns that line up."""
    return f"{value:#.4g}".rstrip(".")  # 1235. -> 1235


HEADER = ["row", "status", "top-1 % A -> B (Δpt)", "p50 ms A -> B", "p50 ratio B/A [95% CI]", "latency", "size"]


def _problems(comparison: Comparison) -> list[str]:
    lines = [f"{p.kind}: {p.label}" + (f" ({(p.b or p.a or {}).get('reason')})" if (p.b or p.a or {}).get("reason") else "")
             for p in comparison.pairs if p.kind != "matched"]
    return lines + [f"strict: {problem}" for problem in comparison.strict_problems]


def _verdict(comparison: Comparison) -> list[str]:
    lines = [f"FAIL {f.threshold.text}: {f.pair.label}: {f.message}" for f in comparison.failures]
    failed = len(comparison.failures) + len(comparison.strict_problems)
    return lines + [f"result: {'FAIL' if failed else 'ok'} ({failed} problem(s)), exit {comparison.exit_code}"]


def render(comparison: Comparison, fmt: str) -> str:
    """The comparison as aligned text, GitHub Markdown or JSON."""
    if fmt == "json":
        return json.dumps(to_json(comparison), indent=1)
    rows = [table_cells(p) for p in comparison.pairs]
    head = [f"A: {comparison.run_a}", f"B: {comparison.run_b}"] + [f"note: {n}" for n in comparison.notes]
    if fmt == "md":
        table = ["| " + " | ".join(HEADER) + " |", "|---|---|" + "--:|" * (len(HEADER) - 2)]
        table += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
        tail = [f"- {line}" for line in _problems(comparison) + _verdict(comparison)]
        return "\n".join([f"- {line}" for line in head] + [""] + table + [""] + tail)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    table = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [HEADER, *rows]]
    table.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(head + [""] + table + [""] + _problems(comparison) + _verdict(comparison))


def to_json(comparison: Comparison) -> dict[str, Any]:
    """A machine-readable comparison (for CI dashboards)."""
    return {
        "run_a": str(comparison.run_a), "run_b": str(comparison.run_b), "notes": comparison.notes,
        "exit_code": comparison.exit_code,
        "rows": [{"key": dict(zip(KEY_FIELDS, p.key)), "kind": p.kind,
                  "status": [p.a.get("status") if p.a else None, p.b.get("status") if p.b else None],
                  "top1": p.value("top1"), "size_bytes": p.value("size"),
                  "latency": {m: {"a_ms": c.a_ms, "b_ms": c.b_ms, "ratio": c.ratio, "ci95": c.ci, "verdict": c.verdict}
                              for m, c in p.latency.items()}} for p in comparison.pairs],
        "failures": [{"threshold": f.threshold.text, "row": f.pair.label, "message": f.message} for f in comparison.failures],
        "strict_problems": comparison.strict_problems,
    }
