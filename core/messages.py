"""The role of a chat message, from whatever names it: a LangChain message type
("human", "AIMessageChunk"), a ``chat`` message's role or an OpenAI role ("developer")."""

from typing import Any

ROLE_BY_TYPE = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "system": "system",
    "developer": "system",
}
ROLES = frozenset(ROLE_BY_TYPE.values())


def message_role(kind: Any) -> str:
    """user, assistant, tool or system; another name is returned lowercased, without
    its ``Message``/``Chunk`` suffix ("remove"), and nothing as "message"."""
    name = str(kind or "").lower()
    for suffix in ("messagechunk", "message", "chunk"):
        if name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
            break
    return ROLE_BY_TYPE.get(name, name or "message")
