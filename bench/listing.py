"""`edgebench list`: generated from the registries, so it never goes stale."""

from __future__ import annotations

from bench.config import FORMATS, TFLITE_PRECISIONS
from bench.models import MODELS
from bench.runtimes import RUNTIMES, is_installed
from compress.registry import PASSES


def listing() -> str:
    out = ["datasets:", "  fashion-mnist   Zalando Fashion-MNIST, 10 classes, 1x28x28 (IDX files)",
           "  imagefolder     a folder of class sub-folders of images ([data].data_dir), read as 28x28 grayscale", "", "models:"]
    out += [f"  {m.name:<15} {m.help}" for m in MODELS.values()]
    out += ["  module:factory  your own nn.Module factory (receives in_channels, num_classes, width if it declares them)", "", "passes:"]
    for spec in PASSES.values():
        out.append(f"  {spec.name:<19} [{spec.kind}] {spec.help}")
        for name, p in spec.params.items():
            allowed = f" one of {list(p.choices)}" if p.choices else ""
            out.append(f"      {name + '=' + repr(p.default):<24} {p.type.__name__}{allowed}: {p.help}")
        out.append(f"      formats: {', '.join(spec.formats)}")
    out += ["", "formats:"]
    out.append(f"  {', '.join(FORMATS)}; TFLite precisions: {', '.join(TFLITE_PRECISIONS)}")
    out += ["", "runtimes:"]
    for r in RUNTIMES.values():
        state = "installed" if is_installed(r) else "not installed"
        out.append(f"  {r.name:<12} formats {','.join(r.formats):<8} devices {','.join(r.devices):<9} {state}: {r.help}")
    return "\n".join(out)
