"""Checkpoint state as JSON: what thread values, admin pages and diffs show.

LangGraph values are Python objects; ``core.jsonable.to_jsonable`` turns them into
plain JSON, and :func:`state_values` picks a checkpoint's state keys out of its channels.
"""

from collections.abc import Mapping
from typing import Any

from core.jsonable import to_jsonable

INTERRUPT = "__interrupt__"
BRANCH_PREFIX = "branch:to:"
START = "__start__"


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
