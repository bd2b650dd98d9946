"""`edgebench list`: every registered pass, parameter, model and runtime, straight from the registries."""

from __future__ import annotations

from bench.listing import listing
from bench.models import MODELS
from bench.runtimes import RUNTIMES
from compress.registry import PASSES


def test_list_names_every_pass_with_its_parameters_and_defaults() -> None:
    text = listing()
    for spec in PASSES.values():
        block = text.split(f"\n  {spec.name} ", 1)[1].split("\n      formats:", 1)[0]  # this pass's lines
        assert f"[{spec.kind}]" in block, spec.name
        for name, param in spec.params.items():
            assert f"      {name}={param.default!r}" in block, (spec.name, name)


def test_list_names_every_model_and_runtime() -> None:
    lines = listing().splitlines()
    for name in MODELS:
        assert any(line.startswith(f"  {name} ") for line in lines), name
    for name in RUNTIMES:
        assert any(line.startswith(f"  {name} ") and ("installed" in line) for line in lines), name
