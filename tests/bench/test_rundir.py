"""bench.rundir: the run folder a new run gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import rundir
from bench.errors import UserError


def test_runs_of_one_config_started_in_the_same_second_get_their_own_folders(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundir, "new_run_id", lambda digest: f"20261206T093107Z-{digest}")
    first, second, third = (rundir.create_run_dir(tmp_path / "results", "abc") for _ in range(3))
    assert [p.name for p in (first, second, third)] == ["20261206T093107Z-abc", "20261206T093107Z-abc-2",
                                                        "20261206T093107Z-abc-3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in (first, second, third))


def test_a_parent_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(UserError, match="cannot create the run folder .*results/"):
        rundir.create_run_dir(tmp_path / "results", "abc")


def test_a_broken_link_as_the_results_folder_is_named_not_retried(tmp_path: Path) -> None:
    (tmp_path / "results").symlink_to(tmp_path / "gone")
    with pytest.raises(UserError, match="exists but is not a folder \\(a file or a broken link\\)"):
        rundir.create_run_dir(tmp_path / "results", "abc")


@pytest.mark.parametrize(("status", "locked", "message"), [
    ("failed", False, "the run failed before its first row \\(RuntimeError: boom\\)"),
    ("running", True, "the run is still going and has no rows yet"),
    ("running", False, "the run stopped before its first row; finish it with: edgebench run --resume"),
    ("running", "left", "the run stopped before its first row"),  # a killed run's .lock file, held by nobody
    ("incomplete", False, "the run stopped before its first row"),
])
def test_a_run_without_rows_says_why_not_that_the_schema_wants_rows(tmp_path: Path, status: str, locked: bool | str,
                                                                     message: str) -> None:
    import json

    from bench.results import read_run_document

    (tmp_path / "results.json").write_text(json.dumps({"status": status, "error": "RuntimeError: boom", "rows": []}))
    if locked == "left":
        (tmp_path / ".lock").write_text("12345")
    with rundir.RunLock(tmp_path) if locked is True else open(tmp_path / "results.json"):
        with pytest.raises(UserError, match=message):
            read_run_document(tmp_path)
    assert read_run_document(tmp_path, check_schema=False)["rows"] == []  # --resume still reads it


def test_a_finished_file_without_rows_gets_the_schema_error(tmp_path: Path) -> None:
    import json

    from bench.results import read_run_document

    (tmp_path / "results.json").write_text(json.dumps({"status": "complete", "rows": []}))
    with pytest.raises(UserError, match="does not meet the results schema"):
        read_run_document(tmp_path)
