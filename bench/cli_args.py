"""Argument types shared by the edgebench sub-commands: argparse turns their ArgumentTypeError into one usage line."""

from __future__ import annotations

import argparse
from typing import Callable


def path_arg(text: str) -> str:
    """A path option or argument. An empty one is refused: `--checkpoint ""` (say, an unset shell variable)
    would otherwise read as "not given" and quietly train a baseline, and `report ""` would read the current folder."""
    if not text:  # only the empty string: " " is a legal (if odd) file name
        raise argparse.ArgumentTypeError("an empty path")
    return text


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer argument no smaller than `minimum`, checked by the config's own rule."""
    from bench.config_checks import at_least

    check = at_least(minimum)

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if problem := check(value):
            raise argparse.ArgumentTypeError(f"{problem}, got {value}")
        return value

    return parse
