"""Graph values and stream chunks as JSON (what the event log, pages and API carry)."""

import base64
import dataclasses
import datetime
import decimal
import enum
import uuid
from collections.abc import Mapping
from typing import Any

from langgraph.types import Send
from pydantic import BaseModel


def to_jsonable(value: Any) -> Any:
    """A JSON-compatible copy of ``value``: messages, pydantic models, dataclasses,
    Interrupts, Sends and Commands become dicts; anything unknown becomes its repr."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Send):
        return {"node": value.node, "arg": to_jsonable(value.arg)}
    if isinstance(value, BaseModel):  # LangChain messages are pydantic models
        return to_jsonable(value.model_dump())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    for attr in ("to_json", "_asdict"):
        method = getattr(value, attr, None)
        if callable(method):
            try:
                return to_jsonable(method())
            except Exception:  # noqa: S112 - fall through to the next way
                continue
    if hasattr(value, "__dict__"):
        public = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        return {"__type__": type(value).__name__, **to_jsonable(public)}
    return repr(value)
