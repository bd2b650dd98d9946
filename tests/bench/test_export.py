"""Exporters turn every converter failure into an ExportError with a one-line reason (the row's)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bench.export import ExportError, export_onnx, export_torch


class _FailsWithoutMessage(nn.Module):
    """A forward pass that raises a bare AssertionError, as some tracers do: no message at all."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError()


@pytest.mark.parametrize("export, name", [(export_torch, "m.pt2"), (export_onnx, "m.onnx")])
def test_an_exception_without_a_message_becomes_an_export_error_naming_its_class(tmp_path: Path, export, name) -> None:
    with pytest.raises(ExportError) as caught:
        export(_FailsWithoutMessage(), tmp_path / name, (1, 4, 4))
    assert str(caught.value).endswith("failed: AssertionError"), str(caught.value)
