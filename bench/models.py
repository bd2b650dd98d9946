"""The baseline model zoo: a registry from name to a factory (in_channels, num_classes, width).

Torch is imported lazily so that `import bench.models` (used by config validation and
`edgebench list`) stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from bench.errors import ConfigError, exception_line

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: str  # "module:function", imported on use
    help: str


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry("edgecnn", "bench.zoo:edgecnn", "default: 4-conv BN CNN + 7x7 conv head, ~91K params, 7.7M MACs; downsamples early for cheap CPU training"),
        ModelEntry("tinycnn", "bench.zoo:tinycnn", "edgecnn with 8-16 channels (12K params), for tests and smoke runs"),
        ModelEntry("mobilenet_v2", "bench.zoo:mobilenet_v2", "torchvision MobileNetV2 (width 1.0 = width_mult 0.5), stem adapted to 1x28x28"),
        ModelEntry("resnet18", "bench.zoo:resnet18", "torchvision ResNet-18 (width scales its channels), 3x3 stem without max-pool for 28x28 input"),
    ]
}


def check_model_name(name: str, where: str) -> None:
    """Accept a zoo name or 'module:factory'; raise ConfigError otherwise (without importing torch)."""
    if name in MODELS:
        return
    if ":" in name:
        module, _, func = name.partition(":")
        if module and func.isidentifier():
            return
    import difflib

    close = difflib.get_close_matches(name, MODELS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{where} = {name!r}: unknown model{hint}; expected one of {list(MODELS)} or 'module:factory'")


def _import_from_current_folder() -> None:
    """Put the current folder on the import path, as `python -m bench` does: the `edgebench` script
    would otherwise not find a `mymodel.py` beside the config that `python -m` finds. Last, not
    first: a stray `onnx.py` there must not shadow an installed package imported later."""
    import os
    import sys

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())


def import_factory(spec: str, where: str) -> Callable[..., Any]:
    module_name, _, func_name = spec.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")):  # '.mod' (relative), 'my-model'
        raise ConfigError(f"{where}: {module_name!r} is not a module name (dotted Python identifiers, e.g. 'mypkg.models')")
    _import_from_current_folder()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import module {module_name!r} ({exc}); it must be importable from the "
                          "current folder or PYTHONPATH") from None
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module ran and failed (a SyntaxError, a sys.exit)
        raise ConfigError(f"{where}: importing module {module_name!r} failed: {exception_line(exc)}") from exc
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ConfigError(f"{where}: module {module_name!r} has no callable {func_name!r}")
    return factory


def build_model(name: str, *, in_channels: int = 1, num_classes: int = 10, width: float = 1.0) -> "nn.Module":
    """Build a zoo model by name, or a user model from 'module:factory'.

    A user factory receives the keyword arguments it declares among in_channels, num_classes, width.
    """
    from torch import nn

    check_model_name(name, "[baseline].model")
    spec = MODELS[name].factory if name in MODELS else name
    factory = import_factory(spec, f"model {name!r}")
    offered = {"in_channels": in_channels, "num_classes": num_classes, "width": width}
    accepted = inspect.signature(factory).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    try:
        model = factory(**{k: v for k, v in offered.items() if takes_all or k in accepted})
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a user factory may raise anything (sys.exit too): its problem, not ours
        raise ConfigError(f"model factory {spec!r} failed: {exception_line(exc)}") from exc  # --debug shows the factory's frame
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model factory {spec!r} returned {type(model).__name__}, expected a torch.nn.Module")
    return model


def count_params(model: "nn.Module") -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: "nn.Module", input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass at batch 1: torch's FLOP counter over the operators
    (convolutions and matrix products, whichever layer or function calls them), halved. Biases,
    norms, activations and pooling are not counted. For conv and linear layers this is the
    textbook count (out pixels x out channels x in channels / groups x kernel area).

    Zeros from unstructured pruning still count: dense kernels execute them.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return int(counter.get_total_flops()) // 2
