"""Checking a run's input against the graph's input schema before the run is created.

LangGraph accepts partial input (a dict of channel updates) and coerces some values
(message dicts into messages), so the check is deliberately shallow: the input must be
an object, name only the graph's input keys, give keys the schema requires on a thread's
first run, and give simple values (numbers, strings, booleans, lists of them) of the
declared type. Complex values (messages, nested models) are left to the graph.
"""

import json
from functools import lru_cache
from typing import Any

import jsonschema

from core.jsonable import to_jsonable
from threads_app.errors import InvalidRun

SIMPLE_TYPES = {"string", "integer", "number", "boolean", "null"}


@lru_cache(maxsize=64)
def _schema(graph) -> dict | None:
    try:
        return graph.get_input_jsonschema()
    except Exception:
        return None  # a schema pydantic cannot describe: check nothing beyond "an object"


@lru_cache(maxsize=256)
def _validator(field: str):
    """A validator of the field's schema (given as JSON), checked and built once:
    jsonschema.validate checks the schema itself at every call."""
    schema = json.loads(field)
    kind = jsonschema.validators.validator_for(schema)
    kind.check_schema(schema)
    return kind(schema)


def _is_simple(schema: dict) -> bool:
    if "$ref" in schema or "anyOf" in schema or "oneOf" in schema or "allOf" in schema:
        return False
    kind = schema.get("type")
    if kind in SIMPLE_TYPES:
        return True
    if kind == "array":
        return _is_simple(schema.get("items") or {"type": "object"})
    return False


def validate_input(graph, value: Any, first_run: bool = True) -> None:
    if not isinstance(value, dict):
        raise InvalidRun(f"input must be an object, got {type(value).__name__}")
    schema = _schema(graph)
    if not schema or schema.get("type") != "object" or "properties" not in schema:
        return
    properties = schema["properties"]
    if schema.get("additionalProperties", False) is not True:
        unknown = sorted(set(value) - set(properties))
        if unknown:
            raise InvalidRun(
                f"input has unknown key(s) {', '.join(unknown)}; "
                f"the graph's input keys are {', '.join(sorted(properties))}"
            )
    if first_run:
        missing = [key for key in schema.get("required", []) if key not in value]
        if missing:
            raise InvalidRun(f"input is missing required key(s) {', '.join(missing)}")
    for key, item in value.items():
        field = properties.get(key, {})
        if not _is_simple(field):
            continue
        validator = _validator(json.dumps(field, sort_keys=True))
        # The error jsonschema.validate raises.
        error = jsonschema.exceptions.best_match(validator.iter_errors(to_jsonable(item)))
        if error is not None:
            raise InvalidRun(f"input.{key}: {error.message}")
