"""Finding a custom model's own source files without running them (bench.user_code)."""

from __future__ import annotations

import logging

from bench import user_code
from bench.user_code import find_spec_without_import, local_modules
from tests.bench.user_code_tree import write_user_code


def test_the_models_own_modules_are_found_and_installed_libraries_are_not(tmp_path, monkeypatch):
    write_user_code(tmp_path, "follow_")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert local_modules("follow_net") == {
        "follow_net", "follow_blocks", "follow_ns", "follow_ns.helpers",
        "follow_pkg", "follow_pkg.registry", "follow_pkg.layers", "follow_pkg.lazy", "follow_pkg.init",
        "follow_pkg.broken", "follow_pkg.broken.sub"}  # json, numpy and the missing module are not
    assert not (tmp_path / "ran.txt").exists()  # no user module was run to find the others


def test_a_dotted_name_is_found_without_importing_its_parent(tmp_path, monkeypatch):
    write_user_code(tmp_path, "lookup_")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = find_spec_without_import("lookup_pkg.broken.sub")
    assert spec is not None and spec.origin.endswith("sub.py")
    assert not (tmp_path / "ran.txt").exists()
    assert find_spec_without_import("lookup_blocks.block") is None  # an attribute of a plain module
    assert find_spec_without_import("no_such_module.sub") is None


def test_an_oversized_tree_is_hashed_in_part_with_a_warning(tmp_path, monkeypatch, caplog):
    write_user_code(tmp_path, "big_")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(user_code, "MAX_USER_MODULES", 3)
    with caplog.at_level(logging.WARNING, logger="edgebench"):
        assert len(local_modules("big_net")) == 3
    assert "more than 3 modules" in caplog.text
