"""Cache keys follow the code that determines the weights, not a version number someone must bump."""

from __future__ import annotations

from bench.cache import PASS_CODE, TRAINING_CODE, code_digest
from tests.bench.user_code_tree import write_user_code


def test_code_digest_changes_with_the_source_of_any_listed_module(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text("def net():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_digest(["my_models"])
    assert before == code_digest(["my_models"]) and len(before) == 16
    (tmp_path / "my_models.py").write_text("def net():\n    return 2\n")
    assert code_digest(["my_models"]) != before


def test_a_custom_models_module_is_part_of_the_digest(tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text("def net():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    zoo_only = code_digest(TRAINING_CODE, "edgecnn")
    custom = code_digest(TRAINING_CODE, "my_models:net")
    assert custom != zoo_only
    (tmp_path / "my_models.py").write_text("def net():\n    return 3\n")
    assert code_digest(TRAINING_CODE, "my_models:net") != custom


def test_pass_code_covers_the_training_code_and_every_model_pass_module():
    assert set(TRAINING_CODE) <= set(PASS_CODE)
    from compress.registry import PASSES, resolve

    for spec in PASSES.values():
        if spec.kind == "model":
            assert resolve(spec).__module__ in PASS_CODE, spec.name


def test_comments_and_line_endings_do_not_change_the_digest(tmp_path, monkeypatch):
    module = tmp_path / "my_code.py"
    module.write_text("def net():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_digest(["my_code"])
    module.write_bytes(b"# a comment\r\ndef net():  # why\r\n\r\n    return 1\r\n")
    assert code_digest(["my_code"]) == before


def test_editing_a_module_the_custom_model_imports_changes_the_digest(tmp_path, monkeypatch):
    write_user_code(tmp_path, "edit_")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_digest(TRAINING_CODE, "edit_net:net")
    (tmp_path / "edit_pkg" / "init.py").write_text("SCALE = 2\n")  # two imports away, through a relative import
    after_deep_edit = code_digest(TRAINING_CODE, "edit_net:net")
    assert after_deep_edit != before
    (tmp_path / "edit_blocks.py").write_text("def block():\n    return 2\n")
    after_blocks = code_digest(TRAINING_CODE, "edit_net:net")
    assert after_blocks != after_deep_edit
    (tmp_path / "edit_ns" / "helpers.py").write_text("K = 2\n")  # in a folder without __init__.py
    assert code_digest(TRAINING_CODE, "edit_net:net") != after_blocks
