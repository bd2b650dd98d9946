"""compress.prune: what Torch-Pruning says about a model reaches the run log, not the terminal."""

import logging

import torch
from torch import nn

from compress.chain import parse_pass
from compress.registry import resolve
from tests.compress.tiny import tiny_context


class ScaledHead(nn.Module):
    """A bare nn.Parameter (a learned per-channel scale): Torch-Pruning warns it cannot prune it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.scale, self.head = nn.Conv2d(1, 16, 3), nn.Parameter(torch.ones(1, 16, 1, 1)), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.conv(x) * self.scale).mean(dim=(2, 3)))


def test_torch_pruning_warnings_go_to_the_run_log_not_the_terminal(recwarn, caplog):
    call = parse_pass("prune.structured(ratio=0.5)")
    with caplog.at_level(logging.INFO, logger="edgebench"):
        resolve(call.spec)(ScaledHead().eval(), call.params, tiny_context(ScaledHead()))
    assert not [w for w in recwarn if "Unwrapped parameters" in str(w.message)]
    assert any(r.getMessage().startswith("Torch-Pruning: Unwrapped parameters detected") for r in caplog.records)
