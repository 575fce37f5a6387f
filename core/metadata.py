"""Metadata and JSON helpers (the seed's MetadataManager)."""

import json
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder


class InvalidJSON(ValueError):
    """A value cannot be stored as JSON."""


def to_json(value: Any) -> str:
    """Compact JSON; UUIDs, datetimes and Decimals become strings. Raises InvalidJSON,
    also for text that is not valid Unicode (lone surrogates), which PostgreSQL refuses."""
    try:
        text = json.dumps(
            value,
            cls=DjangoJSONEncoder,
            separators=(",", ":"),
            allow_nan=False,
            ensure_ascii=False,
        )
    except (TypeError, ValueError) as exc:
        raise InvalidJSON(f"not JSON-serializable: {exc}") from None
    try:
        text.encode()
    except UnicodeEncodeError:
        raise InvalidJSON("contains text that is not valid Unicode") from None
    return text


def json_size(value: Any) -> int:
    """Size in bytes of the value encoded as compact UTF-8 JSON."""
    return len(to_json(value).encode())


def check_depth(value: Any, name: str, limit: int | None = None) -> None:
    """Raise InvalidJSON if ``value`` nests objects or arrays more than ``limit`` levels
    deep (default: STATEHOUSE_MAX_JSON_DEPTH); ``{}`` is one level. Iterative, so a value
    of any depth is checked without a RecursionError."""
    if limit is None:
        limit = settings.STATEHOUSE_MAX_JSON_DEPTH
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            raise InvalidJSON(
                f"{name} is nested more than {limit} levels deep "
                f"(STATEHOUSE_MAX_JSON_DEPTH is {limit})"
            )
        stack.extend((child, depth + 1) for child in children)


def strip_nul(value: Any) -> Any:
    """Remove NUL characters from every string in a JSON value (PostgreSQL refuses them)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strip_nul(v) for v in value]
    return value


def normalize_metadata(value: Any) -> dict[str, Any]:
    """Metadata as a plain JSON object with string keys: None becomes {}.

    Raises InvalidJSON for anything that is not a mapping, not JSON-serializable or
    nested too deep.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidJSON(f"metadata must be a JSON object, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise InvalidJSON(f"metadata keys must be strings, got {key!r}")
    check_depth(value, "metadata")
    normalized = strip_nul(dict(value))
    return json.loads(to_json(normalized))
