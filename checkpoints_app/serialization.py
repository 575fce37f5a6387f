"""Checkpoint state as JSON: what thread values, admin pages and diffs show.

LangGraph values are Python objects (messages are pydantic models, interrupts are
dataclasses); :func:`to_jsonable` turns them into plain JSON, and :func:`state_values`
picks a checkpoint's state keys out of its channels.
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

from pydantic import BaseModel

INTERRUPT = "__interrupt__"
BRANCH_PREFIX = "branch:to:"
START = "__start__"

_MAX_DEPTH = 64


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value``; anything unknown becomes its repr."""
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
    as_dict = getattr(value, "_asdict", None)  # named tuples (Send, ...)
    if callable(as_dict):
        return {"__type__": type(value).__name__, **to_jsonable(as_dict(), depth)}
    if hasattr(value, "__dict__"):
        public = {k: v for k, v in vars(value).items() if not k.startswith("_")}
        return {"__type__": type(value).__name__, **to_jsonable(public, depth)}
    return repr(value)


def is_state_channel(name: str) -> bool:
    """Whether a channel is one of the graph's state keys (not LangGraph's plumbing:
    ``__start__``, ``__pregel_tasks``, ``branch:to:node``...)."""
    return not name.startswith("__") and ":" not in name


def state_values(channel_values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in channel_values.items() if is_state_channel(name)}


def next_nodes(channel_values: Mapping[str, Any]) -> list[str]:
    """The nodes a checkpoint has scheduled (its trigger channels that hold a value)."""
    nodes = [START] if START in channel_values else []
    nodes += sorted(
        name[len(BRANCH_PREFIX) :] for name in channel_values if name.startswith(BRANCH_PREFIX)
    )
    return nodes


def interrupts(pending_writes) -> list[dict[str, Any]]:
    """The interrupts among a checkpoint's pending writes, as the thread keeps them."""
    found = []
    for task_id, channel, value in pending_writes or ():
        if channel != INTERRUPT:
            continue
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            found.append(
                {
                    "id": getattr(item, "id", None),
                    "value": to_jsonable(getattr(item, "value", item)),
                    "task_id": task_id,
                }
            )
    return found
