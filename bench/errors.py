"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Bad input from the user: config, paths, model files, data.

    The message must name the problem (file, key, value) and what was expected, in one line.
    """


class ConfigError(UserError):
    """The configuration file or a value in it is invalid."""


class DataError(UserError):
    """The dataset is missing, empty or malformed."""


class ModelFileError(UserError):
    """A checkpoint or model artifact is missing, corrupt, unsafe or does not fit the model."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its class name when it has none), cut to `limit` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else exc.__class__.__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"  # says it was cut (and why a bracket may be open)


def exception_line(exc: BaseException, limit: int = 300, *, last: bool = False) -> str:
    """'ClassName: line' for a row's reason or a log line: the first (or `last`) non-blank line of the
    message, cut to `limit` characters; the class name alone when the message is empty (a bare
    `AssertionError()` from an exporter must still become a reason, not an IndexError)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{exc.__class__.__name__}: {lines[-1] if last else lines[0]}" if lines else exc.__class__.__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def joined_lines(exc: BaseException, limit: int = 300) -> str:
    """An exception's whole message on one line (its lines joined, runs of spaces collapsed), cut to
    `limit` characters: for messages, like the ONNX checker's, whose first line stops mid-sentence."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_path(path: Path) -> str:
    """A path in an error line: a relative one also as the absolute path it was looked for at."""
    if path.is_absolute():
        return str(path)
    return f"{path} (looked for at {path.absolute()}; relative paths start from the current folder)"
