"""Command lines for the bad-input cases of tests/test_bad_input.py: `edgebench run` with the good
(tiny) config and one thing changed. Each returns a function of the test's tmp folder that writes
the files the command needs and returns its argv after "edgebench"."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tests.bad_input_files import TINY_RUN_CONFIG as GOOD_CONFIG
from tests.bad_input_files import checkpoint, fake_data, toml


def run_command(*extra: str) -> Callable[[Path], list[str]]:
    """`run` with the good config plus the given options (paths may use {tmp})."""
    return lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG)), *[e.format(tmp=tmp) for e in extra]]


def config_command(text: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--config", str(toml(tmp, text))]


def data_command(**kw: object) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG)), "--data-dir", str(fake_data(tmp / "data", **kw))]


def ckpt_command(kind: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", "--config", str(toml(tmp, GOOD_CONFIG)), "--data-dir", str(fake_data(tmp / "data")),
                        "--checkpoint", str(checkpoint(tmp, kind))]


def model_command(factory: str) -> Callable[[Path], list[str]]:
    """`run` with a model factory from tests/bad_input_files.py as the baseline."""
    return model_spec_command(f"tests.bad_input_models:{factory}")


def model_spec_command(spec: str) -> Callable[[Path], list[str]]:
    text = GOOD_CONFIG.replace('"tinycnn"', f'"{spec}"')
    return lambda tmp: ["run", "--config", str(toml(tmp, text)), "--data-dir", str(fake_data(tmp / "data"))]


def variant(passes: str) -> str:
    return f'[[variants]]\nname = "v"\npasses = [{passes}]\n'
