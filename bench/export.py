"""Exporters: torch model -> deployable artifact file. One function per format.

An exporter returns the artifact path or raises ExportError with the converter's message; the
pipeline turns that into an `export_failed` row and goes on with the other cells.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from bench.errors import exception_line


class ExportError(RuntimeError):
    """A conversion failed; the message is what the converter said (shortened)."""


def export_torch(model: nn.Module, path: Path, input_shape: tuple[int, int, int]) -> Path:
    """A torch.export program (.pt2) with a dynamic batch dimension: what the torch runtime loads."""
    model = model.eval()
    batch = torch.export.Dim("N", min=1, max=65536)
    try:
        program = torch.export.export(model, (torch.zeros(2, *input_shape),), dynamic_shapes=({0: batch},))
        torch.export.save(program, str(path))
    except Exception as exc:  # noqa: BLE001 - torch.export raises many unrelated types; all mean "failed"
        raise ExportError(f"torch.export failed: {exception_line(exc)}") from exc
    return path


def export_onnx(model: nn.Module, path: Path, input_shape: tuple[int, int, int], opset: int = 17) -> Path:
    """ONNX with a dynamic batch axis, BN folded (eval mode), checked by the ONNX checker.

    Why the TorchScript-based exporter (dynamo=False): it needs no onnxscript, exports these CNNs
    in well under a second, and emits the plain Conv/Relu/MaxPool graph that ORT's quantizer and
    onnx2tf handle best.
    """
    import onnx

    model = model.eval()
    try:
        with warnings.catch_warnings(), _native_output_to_log("ONNX exporter"):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, *input_shape),), str(path), dynamo=False,
                              input_names=["input"], output_names=["logits"], opset_version=opset,
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True)
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - exporter and checker errors both mean "export failed"
        raise ExportError(f"ONNX export failed: {exception_line(exc)}") from exc
    return path


@contextlib.contextmanager
def _native_output_to_log(what: str) -> Iterator[None]:
    """Catch what native code prints straight to file descriptors 1 and 2 (torch's exporter dumps
    its whole graph to stdout when it fails) and put it in the run log: stdout is for the results
    path under --quiet, and the row's reason already names the failure."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.fstat(1), os.fstat(2)
    except OSError:  # a closed stdout or stderr (`edgebench run >&-`): nothing to keep clean
        yield
        return
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as capture:
        try:
            os.dup2(capture.fileno(), 1)
            os.dup2(capture.fileno(), 2)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            capture.seek(0)
            text = capture.read().decode(errors="replace").strip()
            if text:
                logging.getLogger("edgebench").info("%s output:\n%s", what, text)
