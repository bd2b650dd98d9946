"""bench.pipeline's resume rule: which finished rows of an interrupted variant stay."""

from pathlib import Path

from bench.pipeline import _file_digest, _still_valid
from bench.results import Row


def _row(artifact: str | None, status: str = "ok", reason: str | None = None) -> Row:
    row = Row("v", [], "tflite", "int8", "litert", "cpu", artifact=artifact)
    if status != "ok":
        row.fail(status, reason or "")
    return row


def test_a_finished_row_stays_only_for_the_same_unchanged_file(tmp_path: Path) -> None:
    (tmp_path / "a.tflite").write_bytes(b"model")
    finished = _row("a.tflite").to_dict()
    digest = _file_digest(tmp_path / "a.tflite")
    assert _still_valid(finished, digest, _row("a.tflite"), tmp_path)
    (tmp_path / "a.tflite").write_bytes(b"another model")  # exported again, different bytes
    assert not _still_valid(finished, digest, _row("a.tflite"), tmp_path)
    # the export now fails (no artifact) or writes elsewhere: the old ok row no longer describes the cell
    assert not _still_valid(finished, digest, _row(None, "export_failed", "converter said no"), tmp_path)
    assert not _still_valid(finished, digest, _row("b.tflite"), tmp_path)
    # the file the row measured was gone before the export: nothing proves it was the same
    assert not _still_valid(finished, None, _row("a.tflite"), tmp_path)


def test_rows_without_artifacts_stay_when_they_say_the_same(tmp_path: Path) -> None:
    failed = _row(None, "export_failed", "converter said no").to_dict()
    assert _still_valid(failed, None, _row(None, "export_failed", "converter said no"), tmp_path)
    assert not _still_valid(failed, None, _row(None, "export_failed", "another reason"), tmp_path)
    (tmp_path / "a.tflite").write_bytes(b"model")
    assert not _still_valid(failed, None, _row("a.tflite"), tmp_path)  # the export works now: measure it
