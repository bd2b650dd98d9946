"""Whether a results document meets the results schemas: the public contract (results.schema.json)
and what edgebench's own readers need of the fields it leaves open (results.reader.schema.json)."""

from __future__ import annotations

import copy
import functools
import json
import math
from pathlib import Path
from typing import Any


def schema_path() -> Path | None:
    """../shared/results.schema.json beside the checkout, if present (the public contract)."""
    candidate = Path(__file__).resolve().parent.parent.parent / "shared" / "results.schema.json"
    return candidate if candidate.is_file() else None


def validate_results(document: dict[str, Any], schema_file: Path | None = None, *, partial: bool = False) -> list[str]:
    """Schema errors of a results document (empty when valid): the public contract (`schema_file`, else
    ../shared's copy, else the bundled one), then what edgebench's own readers need of the fields the
    contract leaves open (results.reader.schema.json). `partial` is for a run that stopped early
    (--resume): the contract's required top-level fields and its at-least-one-row rule are waived,
    while every row and field present must still be well-formed."""
    schema_file = schema_file or schema_path() or Path(__file__).with_name("results.schema.json")
    schemas = [json.loads(schema_file.read_text())] if schema_file.is_file() else []
    if partial and schemas:
        contract = copy.deepcopy(schemas[0])
        contract.pop("required", None)
        contract.get("properties", {}).get("rows", {}).pop("minItems", None)
        schemas = [contract]
    schemas.append(_reader_schema())
    return [f"{'/'.join(map(str, e.absolute_path)) or 'top level'}: {e.message}"
            for schema in schemas for e in _validator_class()(schema).iter_errors(document)]


@functools.cache
def _reader_schema() -> dict[str, Any]:
    return json.loads(Path(__file__).with_name("results.reader.schema.json").read_text())


@functools.cache
def _validator_class() -> Any:
    """Draft 2020-12, except that NaN fails every bound: Python's JSON reads a hand-written NaN,
    and every comparison with NaN is False, so a top-1 of NaN would pass "between 0 and 1"."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def bounded(keyword: str) -> Any:
        check = base.VALIDATORS[keyword]

        def validate(validator: Any, bound: Any, instance: Any, schema: dict[str, Any]) -> Any:
            if isinstance(instance, float) and math.isnan(instance):
                yield jsonschema.ValidationError(f"NaN is not a number {_BOUND_SIGNS[keyword]} {bound}")
            else:
                yield from check(validator, bound, instance, schema)

        return validate

    return jsonschema.validators.extend(base, {k: bounded(k) for k in _BOUND_SIGNS})


_BOUND_SIGNS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}


def first_errors(errors: list[str]) -> str:
    """The first schema error, cut short, and how many more there are: one line for a user error."""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{errors[0][:200]}{more}"
