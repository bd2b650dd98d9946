"""The `edgebench` entry point itself: usage errors in one line, and how it ends when its output pipe breaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main


def _entry_point(*argv: str, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "bench", *argv], env=env, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("argv, start", [(["explain", "x", "--samples", "0"], "edgebench explain: error: argument --samples"),
                                          (["frobnicate"], "edgebench: error: argument COMMAND: invalid choice"),
                                          (["compare", "a", "b", "--bogus"],  # points at the help that lists compare's options
                                           "edgebench: error: unrecognized arguments: --bogus (see edgebench compare --help)")])
def test_usage_errors_are_one_line_too(argv: list[str], start: str) -> None:
    proc = _entry_point(*argv, stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(start), err
    assert "--help" in lines[0] and not out


def test_a_closed_pipe_ends_quietly_and_not_as_a_failed_gate() -> None:
    """`edgebench list | head -1`: the reader leaves early. Not exit 1 (compare's "a gate failed"), no error line."""
    proc = _entry_point("list", stdout=subprocess.PIPE)
    proc.stdout.close()  # before the command writes anything: every write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == ""


def test_a_broken_pipe_elsewhere_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Only a closed stdout is the quiet 141: a worker's pipe breaking is a real error, one line and exit 1."""
    from bench import cli

    def broken(args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_cmd_list", broken)
    assert main(["list"]) == 1
    assert capsys.readouterr().err.startswith("edgebench: error: unexpected BrokenPipeError")
