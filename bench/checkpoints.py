"""Safe weight files: state_dicts saved and loaded without ever unpickling code.

`torch.load(..., weights_only=True)` only rebuilds tensors and plain containers; a pickle that
references any other global is refused before anything in it runs.
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.errors import ModelFileError, shown_path


def save_state_dict(model: nn.Module, path: str | Path) -> None:
    """Write a state_dict atomically (temp file + rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read(path: Path) -> Any:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelFileError(f"{path}: reading .safetensors needs the 'safetensors' package (pip install safetensors)") from None
        try:
            return load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise ModelFileError(f"{path}: not a valid safetensors file ({exc})") from None
    _check_torch_format(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing; our error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(f"{path}: refused to load: not a plain state_dict of tensors ({_refusal(exc)}); "
                             "edgebench never unpickles code") from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle can fail in the unpickler with any error type
        first = re.split(r"(?<=\.)\s", (str(exc).strip() or "no detail").splitlines()[0])[0]  # first sentence only
        raise ModelFileError(f"{path}: corrupt or truncated weight file ({exc.__class__.__name__}: {first[:160]})") from None


def _check_torch_format(path: Path) -> None:
    """Refuse, before torch sees it, a file that torch.save cannot have written.

    torch.save writes a zip archive holding a data.pkl (or, in its legacy format, a protocol-2
    pickle starting with 0x80). Anything else (a text file, an image, an ONNX model) would reach
    the unpickler and fail there with whatever error its first bytes happen to trigger.
    """
    with path.open("rb") as handle:
        head = handle.read(4)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                raise ModelFileError(f"{path}: a zip archive but not a torch.save file (no data.pkl; a .pt2 from "
                                     "torch.export holds a program, not a state_dict)")
    elif head.startswith(b"PK\x03\x04"):
        raise ModelFileError(f"{path}: corrupt or truncated weight file (a zip archive without its directory)")
    elif head[:1] != b"\x80":
        raise ModelFileError(f"{path}: not a PyTorch weight file (expected a state_dict written by torch.save, "
                             "or a .safetensors file)")


def _refusal(exc: pickle.UnpicklingError) -> str:
    """The one useful fact in torch's multi-paragraph weights_only error (which also suggests unsafe loading)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # torch colours part of the message
    if found := re.search(r"Unsupported global: GLOBAL (\S+)", text):
        return f"it references {found.group(1)}"
    if found := re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text):
        return found.group(1).strip()[:120]
    return "unsupported content"


def load_state_dict_file(path: str | Path, model: nn.Module) -> dict[str, torch.Tensor]:
    """Load a state_dict file and check it fits `model` (names and shapes); ModelFileError otherwise."""
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"checkpoint {path} is a folder; pass the weight file (a state_dict .pt/.pth or .safetensors)")
    if not path.exists():
        raise ModelFileError(f"checkpoint not found: {shown_path(path)}")
    if not path.is_file():  # a device, pipe or socket (/dev/null): there is no weight file to read
        raise ModelFileError(f"checkpoint {path} is not a regular file; pass the weight file (a state_dict .pt/.pth or .safetensors)")
    obj = _read(path)
    for wrapper in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelFileError(f"{path}: expected a state_dict (a mapping of parameter names to tensors), got {type(obj).__name__}")
    expected = model.state_dict()
    obj = _without_wrapper_prefix(obj, expected)
    # BatchNorm's step counter only matters for momentum=None; torch's own strict load accepts a
    # state_dict without it (saved by older code or stripped by tools), so edgebench does too
    obj = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **obj}
    missing = [k for k in expected if k not in obj]
    unexpected = [k for k in obj if k not in expected]
    if missing or unexpected:
        detail = "; ".join(f"{what} {keys[:3]}{' ...' if len(keys) > 3 else ''}"
                           for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys)
        raise ModelFileError(f"{path}: does not fit the model ({detail})")
    for key, tensor in obj.items():
        if tensor.shape != expected[key].shape:
            raise ModelFileError(f"{path}: {key} has shape {tuple(tensor.shape)}, the model expects {tuple(expected[key].shape)}")
        if tensor.is_complex() or tensor.is_floating_point() != expected[key].is_floating_point():
            # load_state_dict would cast it, dropping imaginary parts or fractions with a warning at most
            raise ModelFileError(f"{path}: {key} holds {str(tensor.dtype).removeprefix('torch.')} values, the model "
                                 f"expects {str(expected[key].dtype).removeprefix('torch.')}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):  # a diverged training's weights
            raise ModelFileError(f"{path}: {key} holds NaN or inf values; a model with them has no outputs to measure")
        if key.endswith("running_var") and bool((tensor < 0).any()):  # its square root makes every output NaN
            raise ModelFileError(f"{path}: {key} holds negative variances; a BatchNorm with them has no outputs to measure")
    return obj


# what wrappers put before every key: DataParallel / DistributedDataParallel, torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _without_wrapper_prefix(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict of a wrapped model with the wrapper's prefix taken off every key, when that
    makes it the model's (weights saved from `nn.DataParallel(model)` or `torch.compile(model)`)."""
    stripped = True
    while stripped:  # wrappers nest: torch.compile(nn.DataParallel(model)) saves '_orig_mod.module.'
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in expected):
                state, stripped = {k[len(prefix):]: v for k, v in state.items()}, True
    return state
