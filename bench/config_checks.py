"""The checks of config values: each takes a value and returns an error message, or None when it is fine."""

from __future__ import annotations

from typing import Any, Callable

from bench.config_sections import suggest


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def unit_interval_open(v: float) -> str | None:
    return None if 0 <= v < 1 else "must be in [0, 1)"


def subset_of(allowed: tuple[str, ...], *, empty_ok: bool = False) -> Callable[[Any], str | None]:
    def check(values: list[str]) -> str | None:
        if not values and not empty_ok:  # an empty list would make no rows, and a run without rows is no result
            return f"must name at least one of {list(allowed)}"
        bad = [v for v in values if v not in allowed]
        if bad:
            return f"unknown value {bad[0]!r}{suggest(bad[0], allowed)}; expected any of {list(allowed)}"
        return repeated(values)

    return check


MAX_THREADS = 256  # beyond any CPU this is for; a typo (100000) would start that many threads


def thread_count(v: int) -> str | None:
    return None if 0 <= v <= MAX_THREADS else f"must be in 0..{MAX_THREADS}"


MAX_BATCH = 4096  # as `edgebench ab --batch`: the batch is tiled from test images, and a typo would ask for GiBs
MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week; beyond it the deadline would overflow the platform's time


def in_range(low: int, high: int) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be in {low}..{high}"


def batch_sizes(values: list[int]) -> str | None:
    if any(v > MAX_BATCH for v in values):
        return f"must be batch sizes of at most {MAX_BATCH}"
    return positive_ints(values)


def positive_ints(values: list[int]) -> str | None:
    if not (values and all(v >= 1 for v in values)):
        return "must be a non-empty list of integers >= 1"
    return repeated(values)


def thread_counts(values: list[int]) -> str | None:
    if any(v > MAX_THREADS for v in values):
        return f"must be thread counts of at most {MAX_THREADS}"
    return positive_ints(values)


def seed_range(v: int) -> str | None:
    return None if 0 <= v < 2**32 else "must be in 0..2**32-1 (numpy and torch seeds)"


def severities(values: list[int]) -> str | None:
    if not (values and all(1 <= s <= 3 for s in values)):
        return "must be a non-empty list of 1, 2 or 3"
    return repeated(values)


def repeated(values: list[Any]) -> str | None:
    """Why a list that names a value twice is rejected: both entries would make the same rows and files."""
    twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
    return None if twice is None else f"lists {twice!r} twice"


def names_a_folder(value: str) -> str | None:
    if "\0" in value:  # no file system takes it; os calls would raise an unexpected ValueError
        return "must not contain a NUL character"
    return None if value.strip() else "must name a folder ('.' for the current one)"


def masker_problem(spec: str) -> str | None:
    from explain.shap_explain import masker_problem as problem  # light: shap itself is imported only to explain

    return problem(spec)
