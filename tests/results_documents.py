"""The smallest results.json document the schema accepts, for tests that hand-write rows."""

from __future__ import annotations

from typing import Any


def minimal_document(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Every top-level field the schema requires, around `rows` (each row still needs its own required fields)."""
    return {"schema_version": 1, "run_id": "test", "created": "2026-01-01T00:00:00Z", "baseline": "baseline",
            "environment": {"python": "3.11", "platform": "linux", "cpu": {"model": "test", "logical_cores": 2}, "packages": {}},
            "dataset": {"name": "fashion-mnist", "test_size": 10}, "config": {}, "rows": rows, **extra}
