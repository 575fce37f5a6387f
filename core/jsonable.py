"""Python values as JSON: what thread values, stream events, admin pages and diffs carry.

LangGraph values are Python objects (messages are pydantic models, interrupts and
commands are dataclasses, ``Send`` is a slotted class); :func:`to_jsonable` turns them
into plain JSON data. It never fails: anything unknown becomes its repr.
"""

import base64
import dataclasses
import datetime
import decimal
import enum
import math
import uuid
from collections.abc import Mapping
from typing import Any

from langgraph.types import Send
from pydantic import BaseModel

_MAX_DEPTH = 64


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value``.

    Non-finite floats and values nested deeper than 64 levels become their repr (JSON,
    and PostgreSQL's jsonb, have no NaN); tuples and sets become lists; objects with a
    ``to_json()`` or ``_asdict()`` what it returns; other objects a dict of their public
    attributes with their ``__type__``.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth > _MAX_DEPTH:
        return repr(value)
    depth = _depth + 1
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item, depth) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item, depth) for item in value]
    if isinstance(value, Send):
        return {"node": value.node, "arg": to_jsonable(value.arg, depth)}
    if isinstance(value, BaseModel):  # LangChain messages are pydantic models
        return to_jsonable(value.model_dump(), depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), depth) for f in dataclasses.fields(value)
        }
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, depth)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    for attr in ("to_json", "_asdict"):  # LangChain Serializable, named-tuple-likes
        method = getattr(value, attr, None)
        if callable(method):
            try:
                return to_jsonable(method(), depth)
            except Exception:  # noqa: S112 - fall through to the next way
                continue
    if hasattr(value, "__dict__"):
        public = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        return {"__type__": type(value).__name__, **to_jsonable(public, depth)}
    return repr(value)
