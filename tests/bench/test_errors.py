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
