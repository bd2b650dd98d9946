"""bench.files: a run's files are replaced whole, with the permissions the umask gives new files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench.files import atomic_write_bytes, atomic_write_json, save_array


def test_files_are_replaced_whole_with_the_umask_permissions(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "run" / "results.json", {"rows": [np.int64(3), np.float32(0.5)]})
    finally:
        os.umask(previous)
    path = tmp_path / "run" / "results.json"
    assert path.read_text() == '{\n "rows": [\n  3,\n  0.5\n ]\n}\n'
    assert path.stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600
    save_array(tmp_path / "run" / "a.npy", np.arange(3))
    assert np.load(tmp_path / "run" / "a.npy", allow_pickle=False).tolist() == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["a.npy", "results.json"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "f.bin", b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "f.bin", "not bytes")  # type: ignore[arg-type]
    assert (tmp_path / "f.bin").read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
