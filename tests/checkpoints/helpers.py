"""Checkpoints made by hand, for the tests that do not need a graph."""

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6


def config(thread_id="t-1", ns="", checkpoint_id=None):
    configurable = {"thread_id": thread_id, "checkpoint_ns": ns}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def put(saver, parent, values, new=None, metadata=None, versions=None):
    """Put a checkpoint after ``parent`` (a config) holding ``values``; ``new`` names the
    channels with a new version (all by default)."""
    previous = saver.get_tuple(parent) if "checkpoint_id" in parent["configurable"] else None
    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6())
    old = dict(previous.checkpoint["channel_versions"]) if previous else {}
    changed = list(values) if new is None else new
    bumped = {ch: saver.get_next_version(old.get(ch), None) for ch in changed}
    checkpoint["channel_versions"] = versions or {**old, **bumped}
    checkpoint["channel_values"] = dict(values)
    return saver.put(parent, checkpoint, metadata or {"source": "loop", "step": 1}, bumped)


def thread_of(saver, length, thread_id="t-1"):
    """A thread of ``length`` checkpoints, each with a new message list and two writes."""
    cfg = config(thread_id)
    for i in range(length):
        cfg = put(
            saver,
            cfg,
            {"messages": [HumanMessage(content=f"m{i}")], "step": i, "notes": [i]},
            new=["messages", "step"] if i % 2 else ["messages", "step", "notes"],
            metadata={"source": "loop", "step": i, "run_id": f"run-{i // 5}"},
        )
        saver.put_writes(cfg, [("messages", [AIMessage(content="w")]), ("notes", [i])], "task-a")
    return cfg
