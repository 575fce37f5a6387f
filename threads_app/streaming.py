"""How the worker streams a run's graph, in LangGraph Server's stream modes.

The worker runs the graph through :class:`GraphStream` and writes each chunk to the run's
event log; the API (``api.langgraph.streaming``) turns the log into Server-Sent Events.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

# The modes a run may ask for. "events" is LangChain's astream_events (v2) of the run;
# "messages-tuple" is LangGraph's "messages" mode as (message, metadata) pairs, while
# "messages" is LangGraph Server's messages/metadata, /partial and /complete events.
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "custom",
    "debug",
    "events",
    "tasks",
    "checkpoints",
)


class GraphStream:
    """``(namespace, mode, chunk)`` for every chunk a graph streams, namespace a tuple
    such as ``("child:<task id>",)`` (empty at the top).

    With ``events``, the graph runs through ``astream_events(version="v2")`` on an event
    loop of its own, driven one event at a time from this (synchronous) thread, so the
    caller's database work between events runs outside any event loop. Each event is
    yielded as ``((), "events", event)``, except the top graph's ``on_chain_stream``
    events: those carry the chunks of the other modes, yielded as without ``events`` (as
    LangGraph Server does).
    """

    def __init__(self, graph, graph_input, config: dict, modes: list[str], subgraphs: bool, **kw):
        self.subgraphs = subgraphs
        self.events = "events" in modes
        modes = [mode for mode in modes if mode != "events"]
        if self.events:
            self.root_id = str(config["run_id"])
            self.loop = asyncio.new_event_loop()
            self.stream = graph.astream_events(
                graph_input, config, version="v2", stream_mode=modes, subgraphs=subgraphs, **kw
            )
        else:
            self.stream = graph.stream(
                graph_input, config, stream_mode=modes, subgraphs=subgraphs, **kw
            )

    def __iter__(self) -> Iterator[tuple[tuple[str, ...], str, Any]]:
        if not self.events:
            for item in self.stream:
                yield self._chunk(item)
            return
        while True:
            try:
                event = self.loop.run_until_complete(anext(self.stream))
            except StopAsyncIteration:
                return
            if "langsmith:hidden" in (event.get("tags") or ()):
                continue
            if event["event"] == "on_chain_stream" and str(event["run_id"]) == self.root_id:
                yield self._chunk(event["data"]["chunk"])
            else:
                yield (), "events", event

    def _chunk(self, item) -> tuple[tuple[str, ...], str, Any]:
        if self.subgraphs:
            namespace, mode, chunk = item
            return tuple(namespace), mode, chunk
        mode, chunk = item
        return (), mode, chunk

    def close(self) -> None:
        """Stop the graph: no step of it runs (or writes) after this."""
        if not self.events:
            self.stream.close()
            return
        try:
            self.loop.run_until_complete(self.stream.aclose())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


def _checkpoint_of(config: dict | None) -> dict | None:
    """A checkpoint's id as LangGraph Server names it, from a config (None without one)."""
    configurable = (config or {}).get("configurable") or {}
    if not configurable.get("thread_id") or not configurable.get("checkpoint_id"):
        return None
    checkpoint = {
        "checkpoint_id": configurable["checkpoint_id"],
        "thread_id": configurable["thread_id"],
    }
    if "checkpoint_ns" in configurable:
        checkpoint["checkpoint_ns"] = configurable["checkpoint_ns"] or ""
    if "checkpoint_map" in configurable:
        checkpoint["checkpoint_map"] = configurable["checkpoint_map"]
    return checkpoint


def debug_chunk(chunk: Any) -> Any:
    """A ``debug`` chunk as LangGraph Server sends it: a checkpoint's payload also has
    ``checkpoint`` and ``parent_checkpoint``, and its tasks' subgraph state is a
    ``checkpoint``."""
    if not isinstance(chunk, dict) or chunk.get("type") != "checkpoint":
        return chunk
    payload = chunk.get("payload")
    if not payload:
        return chunk
    tasks = []
    for task in payload.get("tasks") or []:
        configurable = (task.get("state") or {}).get("configurable")
        if configurable:
            task = {key: value for key, value in task.items() if key != "state"}
            task["checkpoint"] = configurable
        tasks.append(task)
    payload = payload | {
        "checkpoint": _checkpoint_of(payload.get("config")),
        "parent_checkpoint": _checkpoint_of(payload.get("parent_config")),
        "tasks": tasks,
    }
    return chunk | {"payload": payload}
