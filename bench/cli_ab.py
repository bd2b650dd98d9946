"""`edgebench ab RUN_DIR ROW_A ROW_B`: paired, interleaved latency of two rows' artifacts (bench/abtest.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli_args import path_arg
from bench.config_checks import MAX_BATCH  # latency at larger batches says nothing new; both artifacts' activations must fit


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ab` sub-command to the edgebench parser."""
    ab = subparsers.add_parser(
        "ab", help="time two artifacts of a run against each other, interleaved (drift-free speed-up)",
        description="Load the artifacts of two rows of a run in one process and time them in alternating blocks "
                    "(batch 1 by default). Rows of a run are measured minutes apart, so their ratio carries the "
                    "machine's drift; this ratio does not. Rows are written variant/format/precision/runtime, "
                    "e.g. baseline/onnx/fp32/onnxruntime. Prints both medians and how many times faster B is than A.")
    ab.add_argument("run_dir", type=path_arg, metavar="RUN_DIR", help="a run folder (results/<run-id>)")
    ab.add_argument("row_a", metavar="ROW_A", help="reference row, e.g. baseline/onnx/fp32/onnxruntime")
    ab.add_argument("row_b", metavar="ROW_B", help="row compared with it, e.g. prune50-kd-int8/onnx/int8-static/onnxruntime")
    ab.add_argument("--rounds", type=int, default=40, help="alternating rounds (default 40)")
    ab.add_argument("--calls", type=int, default=100, help="calls per block (default 100)")
    ab.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    ab.add_argument("--batch", type=int, default=1, help=f"batch size (default 1, at most {MAX_BATCH})")
    ab.add_argument("--json", action="store_true", help="print the result as JSON")
    ab.set_defaults(func=_cmd_ab)


def _cmd_ab(args: argparse.Namespace) -> int:
    from bench.abtest import find_row, paired_latency, row_predictor
    from bench.config_checks import MAX_THREADS
    from bench.errors import UserError
    from bench.results import read_run_document

    for name, value, low in (("--rounds", args.rounds, 2), ("--calls", args.calls, 1), ("--threads", args.threads, 1),
                             ("--batch", args.batch, 1)):
        if value < low:  # checked before any artifact is loaded
            raise UserError(f"ab: {name} must be >= {low}, got {value}")
    if args.batch > MAX_BATCH:  # two artifacts' inputs and activations at a huge batch exhaust memory
        raise UserError(f"ab: --batch must be <= {MAX_BATCH}, got {args.batch}")
    if args.threads > MAX_THREADS:
        raise UserError(f"ab: --threads must be <= {MAX_THREADS}, got {args.threads}")
    run_dir = Path(args.run_dir)
    document = read_run_document(run_dir)
    row_a, row_b = find_row(document, args.row_a), find_row(document, args.row_b)
    call_a = row_predictor(run_dir, row_a, args.threads, args.batch)
    call_b = row_predictor(run_dir, row_b, args.threads, args.batch)
    result = paired_latency(call_a, call_b, rounds=args.rounds, calls_per_block=args.calls)
    if args.json:
        print(json.dumps({"a": args.row_a, "b": args.row_b, "threads": args.threads, "batch": args.batch, **result.to_dict()}))
        return 0
    low, high = result.ratio_p10_p90
    print(f"A {args.row_a}: p50 {result.a_p50_ms:.4f} ms")
    print(f"B {args.row_b}: p50 {result.b_p50_ms:.4f} ms")
    print(f"B is {result.ratio_median:.2f}x as fast as A (median of {result.rounds} interleaved rounds of "
          f"{result.calls_per_block} calls; 10-90% of rounds: {low:.2f}-{high:.2f}x; batch {args.batch}, {args.threads} thread(s))")
    return 0
