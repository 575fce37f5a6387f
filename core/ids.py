"""Id helpers (the seed's IDGenerator). Entity ids are UUIDs, as the LangGraph API requires."""

import uuid

# LangGraph Server derives a graph's system assistant id from this namespace.
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def system_assistant_id(graph_id: str) -> uuid.UUID:
    return uuid.uuid5(ASSISTANT_NAMESPACE, graph_id)


def short_id(value: uuid.UUID | str) -> str:
    """The first 8 hex digits, as the UI shows ids."""
    return str(value).replace("-", "")[:8]
