import pytest
import torch

from bench.models import MODELS, build_model, count_params


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_zoo_model_takes_28x28_and_its_width_scales_it(name):
    """KD students are the baseline at a smaller width: a factory that ignored width would make the teacher again."""
    torch.manual_seed(0)
    full, half = (build_model(name, width=w).eval() for w in (1.0, 0.5))
    with torch.no_grad():
        assert full(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and half(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_params(half) < 0.5 * count_params(full)


def test_mobilenet_width_one_is_torchvisions_half_width():
    from torchvision.models import mobilenet_v2

    reference = mobilenet_v2(num_classes=10, width_mult=0.5)
    model = build_model("mobilenet_v2")
    # the stem is rebuilt for one input channel and stride 1: 3x3 kernels of 1 instead of 3 channels
    stem = reference.features[0][0].weight.numel() - model.features[0][0].weight.numel()
    assert count_params(reference) - count_params(model) == stem


def test_a_model_file_in_the_current_folder_is_found_by_the_console_script_too(tmp_path, monkeypatch):
    """`python -m bench` puts the current folder on the import path; the `edgebench` script does not,
    so building a model does (a mynet.py beside the config works with either)."""
    import sys

    (tmp_path / "cwd_net_for_test.py").write_text(
        "from torch import nn\n\ndef make(num_classes):\n    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    model = build_model("cwd_net_for_test:make", num_classes=7)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 7)


def test_macs_are_the_textbook_count_and_see_functional_products():
    """edgecnn's 7.65M MACs (the README's number) by conv arithmetic, and a model whose only work is
    `x @ w` (no nn.Linear) counted too, rather than as zero."""
    from torch import nn

    from bench.models import count_macs

    assert count_macs(build_model("edgecnn"), (1, 28, 28)) == 7_651_840

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(784, 10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1) @ self.w

    assert count_macs(Functional(), (1, 28, 28)) == 7840
