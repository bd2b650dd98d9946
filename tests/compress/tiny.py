"""Random, learnable data and a pass context around it: what the pass tests train on."""

import torch

from bench.zoo import tinycnn
from compress.context import PassContext
from compress.train import fit

SHAPE = (1, 28, 28)


def _student(width, model=""):
    """tinycnn students, or a named zoo model at that width."""
    from bench.models import build_model

    return build_model(model, width=width) if model else tinycnn(width=width)


def tiny_data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SHAPE, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, :14].mean(dim=(1, 2)) > 0).long()  # learnable labels
    return x, y


def tiny_context(baseline):
    x, y = tiny_data()

    def run_fit(model, settings, teacher, description):
        return fit(model, lambda epoch: [(x[i:i + 16], y[i:i + 16]) for i in range(0, len(x), 16)], 4, settings, teacher=teacher)

    return PassContext(fit=run_fit, baseline=baseline, build_student=_student, example_inputs=x,
                       example_labels=y, evaluate=lambda m: float((m(x).argmax(1) == y).float().mean()))
