"""bench.resume: which finished rows a resumed run keeps."""

from pathlib import Path

from bench.resume import file_digest, files_present, finished_variants, measured_files, record_digests, still_valid
from bench.results import Row, key_slug, row_key


def _row(artifact: str | None, status: str = "ok", reason: str | None = None) -> Row:
    row = Row("v", [], "tflite", "int8", "litert", "cpu", artifact=artifact)
    if status != "ok":
        row.fail(status, reason or "")
    return row


def _measured(run_dir: Path, row: Row) -> dict:
    """A finished ok row with the logits its measurement saved."""
    (run_dir / "logits").mkdir(exist_ok=True)
    (run_dir / "logits" / f"{row.slug}.npy").write_bytes(b"logits")
    return row.to_dict()


def test_a_finished_row_stays_only_for_the_same_unchanged_file(tmp_path: Path) -> None:
    (tmp_path / "a.tflite").write_bytes(b"model")
    finished = _measured(tmp_path, _row("a.tflite"))
    digest = file_digest(tmp_path / "a.tflite")
    assert still_valid(finished, digest, _row("a.tflite"), tmp_path)
    (tmp_path / "a.tflite").write_bytes(b"another model")  # exported again, different bytes
    assert not still_valid(finished, digest, _row("a.tflite"), tmp_path)
    # the export now fails (no artifact) or writes elsewhere: the old ok row no longer describes the cell
    assert not still_valid(finished, digest, _row(None, "export_failed", "converter said no"), tmp_path)
    assert not still_valid(finished, digest, _row("b.tflite"), tmp_path)
    # the file the row measured was gone before the export: nothing proves it was the same
    assert not still_valid(finished, None, _row("a.tflite"), tmp_path)


def test_a_row_whose_logits_were_deleted_is_measured_again(tmp_path: Path) -> None:
    (tmp_path / "a.tflite").write_bytes(b"model")
    finished = _measured(tmp_path, _row("a.tflite"))
    assert files_present(finished, tmp_path)
    (tmp_path / "logits" / f"{_row('a.tflite').slug}.npy").unlink()
    assert not files_present(finished, tmp_path)
    assert not still_valid(finished, file_digest(tmp_path / "a.tflite"), _row("a.tflite"), tmp_path)
    # robustness figures come from their own logits file
    finished = {**_measured(tmp_path, _row("a.tflite")), "robustness": {"corruption_top1": 0.8}}
    assert not files_present(finished, tmp_path)
    (tmp_path / "a.tflite").unlink()
    assert not files_present(_measured(tmp_path, _row("a.tflite")), tmp_path)  # the artifact itself is gone


def test_a_hand_edited_row_without_every_field_is_judged_not_crashed_on(tmp_path: Path) -> None:
    row = _row("a.tflite")
    (tmp_path / "a.tflite").write_bytes(b"model")
    finished = _measured(tmp_path, row)
    del finished["lineage"], finished["device"]  # a device-less row was measured on the CPU
    assert files_present(finished, tmp_path)


def test_rows_without_artifacts_stay_when_they_say_the_same(tmp_path: Path) -> None:
    failed = _row(None, "export_failed", "converter said no").to_dict()
    assert files_present(failed, tmp_path)  # nothing on disk to lose
    assert still_valid(failed, None, _row(None, "export_failed", "converter said no"), tmp_path)
    assert not still_valid(failed, None, _row(None, "export_failed", "another reason"), tmp_path)
    (tmp_path / "a.tflite").write_bytes(b"model")
    assert not still_valid(failed, None, _row("a.tflite"), tmp_path)  # the export works now: measure it


def test_a_row_that_failed_to_run_is_measured_again(tmp_path: Path, caplog) -> None:
    """A worker crash, timeout or memory limit may not happen again, as a failed pass is tried again."""
    (tmp_path / "a.tflite").write_bytes(b"model")
    crashed = _row("a.tflite", "run_failed", "the worker was killed (signal 9)").to_dict()
    crashed["artifact_sha256"] = file_digest(tmp_path / "a.tflite")
    assert not still_valid(crashed, crashed["artifact_sha256"], _row("a.tflite"), tmp_path)
    document = {"rows": [crashed], "variants_done": ["v"]}
    assert finished_variants(document, tmp_path) == set() and document["variants_done"] == []
    assert "failed to run (the worker was killed (signal 9))" in caplog.text


def test_the_recorded_digest_decides_which_file_a_row_measured(tmp_path: Path) -> None:
    """A row that recorded its artifact's sha256 keeps it whatever the file on disk is now; an older
    row without one is judged by the file as it is before the export rewrites it."""
    (tmp_path / "a.tflite").write_bytes(b"model")
    recorded = {**_measured(tmp_path, _row("a.tflite")), "artifact_sha256": file_digest(tmp_path / "a.tflite")}
    older = {**recorded, "variant": "w"}
    del older["artifact_sha256"]
    (tmp_path / "logits" / f"{key_slug(row_key(older))}.npy").write_bytes(b"logits")
    (tmp_path / "a.tflite").write_bytes(b"changed by hand")
    measured = measured_files([recorded, older], "v", tmp_path)
    assert list(measured.values()) == [(recorded, recorded["artifact_sha256"])]
    assert measured_files([recorded, older], "w", tmp_path)[row_key(older)][1] == file_digest(tmp_path / "a.tflite")
    # the changed file is not what the row measured: its variant is no longer finished
    document = {"rows": [recorded, older], "variants_done": ["v", "w"]}
    assert finished_variants(document, tmp_path) == {"w"} and document["variants_done"] == ["w"]
    # re-exported byte for byte as measured, the row stays; an older kept row learns its file's digest
    (tmp_path / "a.tflite").write_bytes(b"model")
    again = _row("a.tflite")
    again.artifact_sha256 = file_digest(tmp_path / "a.tflite")
    assert still_valid(recorded, recorded["artifact_sha256"], again, tmp_path)
    record_digests([older], [again], {again.key})
    assert "artifact_sha256" not in older  # another variant's row: not this export's
    mine = {k: v for k, v in recorded.items() if k != "artifact_sha256"}
    record_digests([mine], [again], {again.key})
    assert mine["artifact_sha256"] == again.artifact_sha256


def test_a_resumed_run_refuses_images_other_than_those_it_started_with() -> None:
    import pytest

    from bench.errors import UserError
    from bench.resume import check_same_data

    document = {"dataset": {"source": "my-images", "digests": {"train": "t", "val": "v", "test": "x"}}}
    check_same_data(document, {"train": "t", "val": "v", "test": "x"}, "my-images")
    check_same_data({"dataset": {}}, {"train": "t", "val": "v", "test": "y"}, "other")  # recorded before digests: cannot tell
    with pytest.raises(UserError, match="the test images from other are not those the run started with \\(from my-images\\)"):
        check_same_data(document, {"train": "t", "val": "v", "test": "y"}, "other")
    with pytest.raises(UserError, match="the train, val and test images from other"):
        check_same_data(document, {"train": "T", "val": "V", "test": "y"}, "other")


def test_a_row_whose_artifact_lies_outside_the_run_folder_is_never_kept(tmp_path: Path) -> None:
    """An edited results.json must not make --resume read (or trust) a file elsewhere on the machine."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "elsewhere.tflite").write_bytes(b"model")
    for artifact in (str(tmp_path / "elsewhere.tflite"), "../elsewhere.tflite"):
        finished = _measured(run, _row(artifact))
        assert not files_present(finished, run)
        assert measured_files([finished], "v", run)[row_key(finished)][1] is None
