"""LangGraph Server's threads: create, search, patch, copy, prune and delete them, and
read or write their graph state (current, at a checkpoint, history)."""

import uuid
from typing import Any, Literal

from django.db.models import QuerySet
from ninja import Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import Field

from api.common import (
    MAX_INT,
    Detail,
    Interrupt,
    Invalid,
    Json,
    Strict,
    ThreadOut,
    get_thread,
    json_contains,
    page_size,
)
from threads_app import graph_state, services
from threads_app.models import Thread

router = Router()


class ThreadCreate(Strict):
    thread_id: str | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    # Statehouse: start from the session's context window (needs metadata.graph_id).
    from_session_context: bool = False


class ThreadPatch(Strict):
    metadata: Json


class ThreadSearch(Strict):
    metadata: Json | None = None
    values: Json | None = None
    ids: list[str] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    offset: int = Field(default=0, ge=0, le=MAX_INT)
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: Literal["asc", "desc"] | None = None


class ThreadCount(Strict):
    metadata: Json | None = None
    values: Json | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None


class ThreadPrune(Strict):
    thread_ids: list[str] = Field(default_factory=list, max_length=1000)
    strategy: Literal["delete", "keep_latest"] = "delete"


class Pruned(Schema):
    pruned_count: int


class StateUpdate(Strict):
    values: Any = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: Json | None = None


class StateAtCheckpoint(Strict):
    checkpoint: Json
    subgraphs: bool = False


class HistoryQuery(Strict):
    limit: int = Field(default=10, ge=1, le=MAX_INT)
    before: str | Json | None = None
    metadata: Json | None = None
    checkpoint: Json | None = None


class CheckpointRef(Schema):
    """Where a state is: its thread, checkpoint namespace and checkpoint."""

    thread_id: str | None
    checkpoint_ns: str | None
    checkpoint_id: str | None
    checkpoint_map: Json | None


class Task(Schema):
    id: str
    name: str
    path: list[Any]
    error: str | None
    interrupts: list[Interrupt]
    checkpoint: CheckpointRef | None
    state: "ThreadState | None"
    result: Any


class ThreadState(Schema):
    """A thread's graph state at a checkpoint, as LangGraph Server answers it."""

    values: Any
    next: list[str]
    checkpoint: CheckpointRef | None
    metadata: Json | None
    created_at: str | None
    parent_checkpoint: CheckpointRef | None
    tasks: list[Task]
    interrupts: list[Interrupt]


Task.model_rebuild()


class StateWritten(Schema):
    checkpoint: CheckpointRef | None


@router.post(
    "/threads",
    response={200: ThreadOut, 404: Detail, 409: Detail, 422: Invalid},
    summary="Create a thread",
)
def create_thread(request, body: ThreadCreate):
    if body.thread_id:
        try:
            uuid.UUID(body.thread_id)
        except ValueError:
            raise HttpError(422, "thread_id must be a UUID") from None
    thread = services.create_thread_for(
        request.auth,
        body.thread_id,
        body.metadata,
        if_exists=body.if_exists,
        from_session_context=body.from_session_context,
    )
    return Thread.objects.select_related("workflow").get(pk=thread.pk)


def _threads(request, body) -> QuerySet:
    threads = services.visible_threads(request.auth).select_related("workflow")
    if getattr(body, "ids", None):
        try:
            threads = threads.filter(pk__in=[uuid.UUID(i) for i in body.ids])
        except ValueError:
            raise HttpError(422, "ids must be UUIDs") from None
    if body.status:
        threads = threads.filter(status=body.status)
    metadata = dict(body.metadata or {})
    session_id = metadata.pop("session_id", None)
    if session_id:
        try:
            threads = threads.filter(session_id=uuid.UUID(session_id))
        except (ValueError, TypeError, AttributeError):
            raise HttpError(
                422, f"metadata.session_id must be a session id (a UUID), got {session_id!r:.80}"
            ) from None
    threads = json_contains(threads, "metadata", metadata)
    return json_contains(threads, "values", body.values)


@router.post(
    "/threads/search", response={200: list[ThreadOut], 422: Invalid}, summary="Search threads"
)
def search_threads(request, body: ThreadSearch):
    order = {"thread_id": "id"}.get(body.sort_by or "created_at", body.sort_by or "created_at")
    prefix = "" if body.sort_order == "asc" else "-"
    threads = _threads(request, body).order_by(prefix + order, "id")
    return threads[body.offset : body.offset + page_size(body.limit)]


@router.post("/threads/count", response={200: int, 422: Invalid}, summary="Count threads")
def count_threads(request, body: ThreadCount):
    return _threads(request, body).count()


@router.post(
    "/threads/prune",
    response={200: Pruned, 422: Invalid},
    summary="Delete threads, or all but their latest state",
)
def prune_threads(request, body: ThreadPrune):
    """``delete``: the threads, with their runs and checkpoints; ``keep_latest``: every
    checkpoint but each namespace's latest. Unknown (or another owner's) ids are skipped,
    as LangGraph Server skips them; the answer counts the threads pruned."""
    try:
        wanted = [uuid.UUID(str(thread_id)) for thread_id in body.thread_ids]
    except ValueError:
        raise HttpError(422, "Invalid thread ID: must be a UUID") from None
    found = services.visible_threads(request.auth).filter(pk__in=wanted)
    thread_ids = list(found.values_list("pk", flat=True))
    pruned = services.prune_threads(thread_ids, body.strategy, actor=request.auth)
    return {"pruned_count": pruned}


@router.get("/threads/{thread_id}", response={200: ThreadOut, 404: Detail}, summary="Get a thread")
def read_thread(request, thread_id: str):
    return get_thread(request, thread_id)


@router.patch(
    "/threads/{thread_id}",
    response={200: ThreadOut, 404: Detail, 422: Invalid},
    summary="Update a thread's metadata",
)
def patch_thread(request, thread_id: str, body: ThreadPatch):
    thread = get_thread(request, thread_id)
    services.patch_thread(thread.pk, body.metadata, actor=request.auth)
    return Thread.objects.select_related("workflow").get(pk=thread.pk)


@router.delete("/threads/{thread_id}", response={204: None, 404: Detail}, summary="Delete a thread")
def delete_thread(request, thread_id: str):
    thread = get_thread(request, thread_id)
    services.delete_thread(thread.pk, actor=request.auth)
    return Status(204, None)


@router.post(
    "/threads/{thread_id}/copy",
    response={200: ThreadOut, 404: Detail},
    summary="Copy a thread with its checkpoints",
)
def copy_thread(request, thread_id: str):
    copy = services.copy_thread(get_thread(request, thread_id), actor=request.auth)
    return Thread.objects.select_related("workflow").get(pk=copy.pk)


# --- thread state -------------------------------------------------------------------


@router.get(
    "/threads/{thread_id}/state",
    response={200: ThreadState, 404: Detail},
    summary="The thread's current state",
)
def thread_state(request, thread_id: str, subgraphs: bool = False):
    thread = get_thread(request, thread_id, with_state=not subgraphs)
    return graph_state.current(thread, subgraphs=subgraphs)


def _state_at(thread: Thread, checkpoint, subgraphs: bool) -> Json:
    try:
        return graph_state.current(thread, checkpoint=checkpoint, subgraphs=subgraphs)
    except graph_state.CheckpointNotFound as exc:
        raise HttpError(404, str(exc)) from None


@router.post(
    "/threads/{thread_id}/state/checkpoint",
    response={200: ThreadState, 404: Detail, 422: Invalid},
    summary="State at a checkpoint",
)
def thread_state_at_post(request, thread_id: str, body: StateAtCheckpoint):
    thread = get_thread(request, thread_id)
    return _state_at(thread, body.checkpoint, body.subgraphs)


@router.get(
    "/threads/{thread_id}/state/{checkpoint_id}",
    response={200: ThreadState, 404: Detail},
    summary="State at a checkpoint",
)
def thread_state_at(request, thread_id: str, checkpoint_id: str, subgraphs: bool = False):
    thread = get_thread(request, thread_id)
    return _state_at(thread, {"checkpoint_id": checkpoint_id}, subgraphs)


@router.post(
    "/threads/{thread_id}/state",
    response={200: StateWritten, 404: Detail, 409: Detail, 422: Invalid},
    summary="Update the thread's state",
)
def update_thread_state(request, thread_id: str, body: StateUpdate):
    thread = get_thread(request, thread_id)
    checkpoint = dict(body.checkpoint or {})
    if body.checkpoint_id:
        checkpoint["checkpoint_id"] = body.checkpoint_id
    return services.update_thread_state(
        thread.pk, body.values, body.as_node, checkpoint, actor=request.auth
    )


@router.post(
    "/threads/{thread_id}/history",
    response={200: list[ThreadState], 404: Detail, 422: Invalid},
    summary="The thread's state history",
)
def thread_history(request, thread_id: str, body: HistoryQuery):
    thread = get_thread(request, thread_id)
    return graph_state.history(
        thread,
        limit=page_size(body.limit),
        before=body.before,
        metadata=body.metadata,
        checkpoint=body.checkpoint,
    )


@router.get(
    "/threads/{thread_id}/history",
    response={200: list[ThreadState], 404: Detail, 422: Invalid},
    summary="The thread's state history",
)
def thread_history_get(
    request, thread_id: str, limit: int = Query(10, ge=1, le=MAX_INT), before: str | None = None
):
    thread = get_thread(request, thread_id)
    before_config = {"checkpoint_id": before} if before else None
    return graph_state.history(thread, limit=page_size(limit), before=before_config)
