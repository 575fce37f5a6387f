"""A thread's graph state through DjangoSaver, in the LangGraph API's shapes."""

import re
import uuid
from typing import Any

from django.db.models import Exists, JSONField, OuterRef, QuerySet, Subquery
from django.db.models.fields.json import KT
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot

from checkpoints_app.models import Checkpoint, CheckpointWrite
from core import state
from core.jsonable import to_jsonable
from threads_app import lifecycle, registry
from threads_app.models import Run, Thread


def _saver():
    from checkpoints_app.saver import DjangoSaver

    return DjangoSaver()


def _graph_id(thread: Thread, saver) -> str | None:
    if thread.workflow_id:
        return thread.workflow.graph_id
    last_run = thread.runs.exclude(workflow=None).select_related("workflow").first()
    if last_run is not None:
        return last_run.workflow.graph_id
    latest = saver.get_tuple({"configurable": {"thread_id": str(thread.pk), "checkpoint_ns": ""}})
    if latest is not None:
        return (latest.metadata or {}).get("graph_id")
    return None


def _graph(thread: Thread):
    saver = _saver()
    graph_id = _graph_id(thread, saver)
    if not graph_id or graph_id not in registry.graph_ids():
        return None
    return registry.load_graph(graph_id, thread.config or {}, checkpointer=saver)


CHECKPOINT_REF = re.compile(r"^[\w\-.:|]{1,255}$")


def _ref(name: str, value: Any) -> str:
    """A checkpoint id or namespace from a request, refused when it cannot be one."""
    if not isinstance(value, str) or not CHECKPOINT_REF.match(value):
        raise state.InvalidState(f"{name} is not a valid checkpoint reference: {value!r:.80}")
    return value


def _config(thread: Thread, checkpoint: dict | str | None = None) -> dict:
    configurable: dict[str, Any] = {"thread_id": str(thread.pk), "checkpoint_ns": ""}
    if isinstance(checkpoint, str):
        configurable["checkpoint_id"] = _ref("checkpoint_id", checkpoint)
    elif checkpoint:
        inner = checkpoint.get("configurable", checkpoint)
        if not isinstance(inner, dict):
            raise state.InvalidState("checkpoint must be an object")
        for key in ("checkpoint_id", "checkpoint_ns"):
            if inner.get(key):
                configurable[key] = _ref(key, inner[key])
    return {"configurable": configurable}


def _checkpoint(config: dict | None) -> dict | None:
    if not config:
        return None
    configurable = config.get("configurable", {})
    return {
        "thread_id": configurable.get("thread_id"),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
        "checkpoint_id": configurable.get("checkpoint_id"),
        "checkpoint_map": configurable.get("checkpoint_map"),
    }


def snapshot_out(snapshot: StateSnapshot) -> dict:
    tasks = []
    for task in snapshot.tasks:
        task_state = task.state
        tasks.append(
            {
                "id": task.id,
                "name": task.name,
                "path": to_jsonable(list(task.path)),
                "error": repr(task.error) if task.error else None,
                "interrupts": [
                    {"value": to_jsonable(i.value), "id": i.id} for i in task.interrupts
                ],
                "checkpoint": _checkpoint(task_state) if isinstance(task_state, dict) else None,
                "state": snapshot_out(task_state)
                if isinstance(task_state, StateSnapshot)
                else None,
                "result": to_jsonable(task.result),
            }
        )
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next),
        "checkpoint": _checkpoint(snapshot.config),
        "metadata": to_jsonable(snapshot.metadata),
        "created_at": snapshot.created_at,
        "parent_checkpoint": _checkpoint(snapshot.parent_config),
        "tasks": tasks,
        "interrupts": [{"value": to_jsonable(i.value), "id": i.id} for i in snapshot.interrupts],
    }


def _empty(thread: Thread) -> dict:
    return {
        "values": {},
        "next": [],
        "checkpoint": None,
        "metadata": None,
        "created_at": None,
        "parent_checkpoint": None,
        "tasks": [],
        "interrupts": [],
    }


class CheckpointNotFound(LookupError):
    """The thread has no checkpoint with the id asked for."""


def with_latest_checkpoint(threads: QuerySet, thread_id) -> QuerySet:
    """``threads`` (the one of ``thread_id``) with what :func:`current` needs to answer
    from the thread's cached values, in the same statement: its latest checkpoint (id,
    parent, metadata, time), whether that checkpoint has pending writes or a checkpoint
    was written after the thread, and the status of its latest run."""
    latest = Checkpoint.objects.filter(thread_id=str(thread_id), checkpoint_ns="").order_by(
        "-checkpoint_id"
    )
    return threads.annotate(
        latest_checkpoint_id=Subquery(latest.values("checkpoint_id")[:1]),
        latest_parent_id=Subquery(latest.values("parent_checkpoint_id")[:1]),
        latest_metadata=Subquery(latest.values("metadata")[:1], output_field=JSONField()),
        latest_ts=Subquery(latest.annotate(ts=KT("checkpoint__ts")).values("ts")[:1]),
        latest_has_writes=Exists(
            CheckpointWrite.objects.filter(
                thread_id=str(thread_id),
                checkpoint_ns="",
                checkpoint_id=Subquery(latest.values("checkpoint_id")[:1]),
            )
        ),
        written_after=Exists(
            Checkpoint.objects.filter(
                thread_id=str(thread_id), created_at__gt=OuterRef("updated_at")
            )
        ),
        last_run_status=Subquery(
            Run.objects.filter(thread=OuterRef("pk")).order_by("-created_at").values("status")[:1]
        ),
    )


def _cached(thread: Thread) -> dict | None:
    """The thread's state now from its row (see :func:`with_latest_checkpoint`), or None
    when the row cannot say it: it must be idle after a successful run (so nothing is
    left to run and nothing waits), its values cached whole, its latest checkpoint
    written before the thread's last change and with no pending writes, and its graph
    one this server has."""
    if not hasattr(thread, "latest_checkpoint_id"):
        return None
    ready = (
        thread.status == Thread.Status.IDLE
        and thread.last_run_status == Run.Status.SUCCESS
        and thread.latest_checkpoint_id
        and not thread.latest_has_writes
        and not thread.written_after
        and not thread.interrupts
        and isinstance(thread.values, dict)
        and "__truncated__" not in thread.values
        and thread.workflow_id
        and thread.workflow.graph_id in registry.graph_ids()
    )
    if not ready:
        return None
    thread_id = str(thread.pk)

    def ref(checkpoint_id):
        return _checkpoint(
            {"configurable": {"thread_id": thread_id, "checkpoint_id": checkpoint_id}}
        )

    return {
        "values": thread.values,
        "next": [],
        "checkpoint": ref(thread.latest_checkpoint_id),
        "metadata": thread.latest_metadata,
        "created_at": thread.latest_ts,
        "parent_checkpoint": ref(thread.latest_parent_id) if thread.latest_parent_id else None,
        "tasks": [],
        "interrupts": [],
    }


def current(thread: Thread, checkpoint=None, subgraphs: bool = False) -> dict:
    """The thread's state now, or at ``checkpoint`` (CheckpointNotFound if it has none).

    The state now, without subgraphs, is answered from the thread's row when it can say
    it (a thread read through :func:`with_latest_checkpoint`), else by LangGraph."""
    if checkpoint is None and not subgraphs:
        cached = _cached(thread)
        if cached is not None:
            return cached
    config = _config(thread, checkpoint)
    checkpoint_id = config["configurable"].get("checkpoint_id")
    if checkpoint_id and _saver().get_tuple(config) is None:
        raise CheckpointNotFound(f"Thread {thread.pk} has no checkpoint {checkpoint_id}")
    graph = _graph(thread)
    if graph is None:
        return _empty(thread)
    return snapshot_out(graph.get_state(config, subgraphs=subgraphs))


def _before(thread: Thread, before) -> dict | None:
    """The ``before`` of a history request as a config; its id must be a checkpoint id
    (LangGraph's are UUIDs), or the answer would be a history cut at an arbitrary string."""
    if not before:
        return None
    inner = before.get("configurable", before) if isinstance(before, dict) else before
    raw = inner.get("checkpoint_id") if isinstance(inner, dict) else inner
    try:
        checkpoint_id = str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError):
        raise state.InvalidState(
            f"before must be a checkpoint id (a UUID), got {raw!r:.80}"
        ) from None
    return _config(thread, checkpoint_id)


def history(thread: Thread, limit=10, before=None, metadata=None, checkpoint=None) -> list[dict]:
    before_config = _before(thread, before)
    graph = _graph(thread)
    if graph is None:
        return []
    snapshots = graph.get_state_history(
        _config(thread, checkpoint), filter=metadata or None, before=before_config, limit=limit
    )
    return [snapshot_out(snapshot) for snapshot in snapshots]


def update(thread: Thread, values, as_node: str | None, checkpoint=None, actor=None) -> dict:
    """Write ``values`` as if ``as_node`` had returned them; recorded on the thread too."""
    graph = _graph(thread)
    if graph is None:
        raise state.InvalidState(
            f"thread {thread.pk} has no graph yet: give it an assistant (metadata.graph_id) "
            "or run it once before updating its state"
        )
    if as_node is not None and as_node not in graph.nodes:
        raise state.InvalidState(f"as_node {as_node!r} is not a node of the graph")
    if values is not None and not isinstance(values, dict | list):
        raise state.InvalidState("values must be an object (or a list of updates)")
    try:
        config = graph.update_state(_config(thread, checkpoint), values, as_node=as_node)
    except (InvalidUpdateError, ValueError, TypeError, KeyError) as exc:
        raise state.InvalidState(f"cannot update the thread's state: {exc}") from None
    snapshot = graph.get_state({"configurable": {"thread_id": str(thread.pk)}})
    interrupts = lifecycle.snapshot_interrupts(snapshot)
    lifecycle.state_written(thread, snapshot.values, interrupts, bool(snapshot.next), actor=actor)
    return {"checkpoint": _checkpoint(config)}
