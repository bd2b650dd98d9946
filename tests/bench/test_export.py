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


def test_what_the_exporter_prints_natively_goes_to_the_log_not_stdout(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """torch's exporter writes its whole graph to file descriptor 1 when it fails: stdout must stay the
    results path alone under --quiet, so the text goes to the run log."""
    from bench.zoo import tinycnn

    with caplog.at_level("INFO", logger="edgebench"), pytest.raises(ExportError, match="Unsupported onnx_opset_version"):
        export_onnx(tinycnn().eval(), tmp_path / "m.onnx", (1, 28, 28), opset=99)
    assert capfd.readouterr().out == ""
    assert "ONNX exporter output" in caplog.text and "graph" in caplog.text
