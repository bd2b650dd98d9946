"""One-line reasons from exceptions (row reasons, log lines)."""

from __future__ import annotations

from bench.errors import exception_line


def test_exception_line_names_the_class_and_one_line_of_the_message() -> None:
    assert exception_line(ValueError("first\n\n  second  \n")) == "ValueError: first"
    assert exception_line(ValueError("first\nsecond"), last=True) == "ValueError: second"
    assert exception_line(AssertionError()) == "AssertionError"
    assert exception_line(KeyError("")) == "KeyError: ''"  # str(KeyError('')) is "''"
    cut = exception_line(RuntimeError("x" * 50), limit=20)
    assert len(cut) == 20 and cut.endswith("…") and cut.startswith("RuntimeError: xx")


def test_a_relative_path_in_an_error_also_shows_where_it_was_looked_for(tmp_path, monkeypatch) -> None:
    from pathlib import Path

    from bench.errors import shown_path

    monkeypatch.chdir(tmp_path)
    assert shown_path(Path("rgb")) == f"rgb (looked for at {tmp_path}/rgb; relative paths start from the current folder)"
    assert shown_path(tmp_path / "rgb") == f"{tmp_path}/rgb"
