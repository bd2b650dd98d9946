"""`edgebench inspect FILE`: validate a model artifact and show its interface, registered by bench.cli.

It never runs the model: the file is checked and read with the pure-Python parsers of
bench.artifacts, so inspecting an untrusted or broken file is safe and ends in one clear line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.artifacts import ArtifactInfo, TensorInfo
from bench.cli_args import path_arg


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `inspect` sub-command to the edgebench parser."""
    inspect = subparsers.add_parser(
        "inspect", help="check a model file (.onnx, .tflite, .pt2) and show its inputs, outputs and operators",
        description="Validate an artifact without running it (ONNX checker and external-data containment, TFLite "
                    "flatbuffer structure, .pt2 zip integrity), then print its inputs and outputs (name, shape, "
                    "dtype, quantization) and how often each operator occurs. A bad file exits with code 2.")
    inspect.add_argument("file", type=path_arg, metavar="FILE", help="an .onnx, .tflite or .pt2 file")
    inspect.add_argument("--format", choices=("onnx", "tflite", "torch"), help="override the format guessed from the suffix")
    inspect.add_argument("--json", action="store_true", help="print the description as JSON")
    inspect.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from bench.artifacts import describe_artifact

    info = describe_artifact(Path(args.file), args.format)
    print(json.dumps(info.to_dict(), indent=1) if args.json else render(info))
    return 0


def _tensor_lines(tensors: list[TensorInfo]) -> list[str]:
    if not tensors:
        return ["  (none listed)"]
    width = max(len(t.name) for t in tensors)
    return [f"  {t.name:<{width}}  {t.dtype:<8} [{', '.join(map(str, t.shape))}]" + (f"  {t.quantization}" if t.quantization else "")
            for t in tensors]


def render(info: ArtifactInfo) -> str:
    """Human-readable description: header, inputs, outputs, operator counts, notes."""
    total = sum(info.operators.values())
    if info.checked == "header":  # nothing past the header was read: no "ok", no empty listings
        lines = [f"{info.path}: {info.format}, {info.size_bytes:,} bytes, header ok (the rest not checked)"]
        return "\n".join(lines + [f"note: {note}" for note in info.notes])
    lines = [f"{info.path}: {info.format}, {info.size_bytes:,} bytes, ok",
             "inputs:", *_tensor_lines(info.inputs),
             "outputs:", *_tensor_lines(info.outputs),
             f"operators ({total} nodes, {len(info.operators)} kinds):"]
    lines += [f"  {count:>5}  {op}" for op, count in info.operators.items()]
    lines += [f"note: {note}" for note in info.notes]
    return "\n".join(lines)
