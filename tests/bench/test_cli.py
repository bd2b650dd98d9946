"""The `edgebench` entry point itself: usage errors in one line, and how it ends when its output pipe breaks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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


@pytest.mark.parametrize("argv, argument", [(["run", "--checkpoint", ""], "--checkpoint"), (["run", "--out", ""], "--out"),
                                             (["run", "--config", ""], "--config"), (["run", "--data-dir", ""], "--data-dir"),
                                             (["run", "--resume", ""], "--resume"), (["report", ""], "RUN_DIR"),
                                             (["compare", "a", ""], "RUN_B"), (["explain", ""], "RUN_DIR"),
                                             (["ab", "", "a", "b"], "RUN_DIR"), (["inspect", ""], "FILE")])
def test_an_empty_path_is_refused_not_taken_as_not_given(argv: list[str], argument: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--checkpoint "$UNSET"` must not quietly train a baseline, nor `report ""` read the current folder."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(lines) == 1 and f"argument {argument}: an empty path" in lines[0], lines
    assert not any(tmp_path.iterdir())


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


def test_print_config_shows_the_command_lines_settings_folded_in(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tomllib

    assert main(["run", "--print-config", "--data-dir", "imgs", "--checkpoint", "w.pt", "--out", "o", "--no-explain"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed["data"]["data_dir"] == "imgs" and printed["baseline"]["checkpoint"] == "w.pt"
    assert printed["output"]["dir"] == "o" and printed["explain"]["enabled"] is False
    assert len(printed["variants"]) >= 8  # the built-in config's variants, not an empty table


def test_resume_takes_the_data_dir_the_run_started_with_and_refuses_another_baseline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tests.bad_input_files import TINY_RUN_CONFIG, fake_data, toml

    config = toml(tmp_path, TINY_RUN_CONFIG + f'[output]\ndir = "{tmp_path / "out"}"\ncache_dir = "{tmp_path / "cache"}"\n')
    data = fake_data(tmp_path / "data")
    assert main(["run", "--config", str(config), "--data-dir", str(data), "--quick", "--quiet"]) == 0
    (run_dir,) = (tmp_path / "out").iterdir()
    results = run_dir / "results.json"

    def reopen(edit: Any = lambda document: None) -> None:
        document = json.loads(results.read_text())
        document["status"] = "incomplete"
        edit(document)
        results.write_text(json.dumps(document))

    reopen()
    # no --data-dir: the run's own fake images again (Fashion-MNIST's would be refused as other images)
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert json.loads(results.read_text())["status"] == "complete"
    capsys.readouterr()
    reopen(lambda document: document["baseline_info"].update(cache_key="0" * 16))  # as if trained with other weights
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot resume {run_dir}: its baseline (0000000000000000) differs" in err[0], err


def test_a_file_where_a_folder_must_go_is_named_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "report_run", tmp_path / "run")
    shutil.rmtree(run / "plots", ignore_errors=True)
    (run / "plots").write_text("not a folder")
    before = (run / "results.json").read_bytes()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"edgebench: error: {run / 'plots'}: File exists"), err
    assert (run / "results.json").read_bytes() == before and (run / "plots").read_text() == "not a folder"


def test_quiet_stdout_is_the_results_path_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`$(edgebench run --quiet)` must get the path even when the user's model prints: those lines go to stderr."""
    from tests.bad_input_files import TINY_RUN_CONFIG, fake_data, toml

    text = TINY_RUN_CONFIG.replace('"tinycnn"', '"tests.bad_input_models:model_that_prints"')
    config = toml(tmp_path, text + f'[output]\ndir = "{tmp_path / "out"}"\ncache_dir = "{tmp_path / "cache"}"\n')
    assert main(["run", "--config", str(config), "--data-dir", str(fake_data(tmp_path / "data")), "--quick", "--quiet"]) == 0
    out, err = capsys.readouterr()
    (run_dir,) = (tmp_path / "out").iterdir()
    assert out == f"{run_dir / 'results.json'}\n" and "FORWARD CALLED" in err
