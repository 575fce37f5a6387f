"""Statehouse's API for a thread's checkpoints: its timeline, restore and fork."""

from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import Field

from api.common import MAX_INT, Detail, Invalid, Json, Strict, ThreadOut, get_thread
from checkpoints_app import services
from checkpoints_app.saver import DjangoSaver

router = Router(tags=["Checkpoints"])

CHECKPOINT_ID = r"^[\w\-.:]+$"


class CheckpointAction(Strict):
    checkpoint_id: str = Field(min_length=1, max_length=64, pattern=CHECKPOINT_ID)
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT)


class CheckpointOut(Schema):
    """One checkpoint of the thread's timeline (a saver's CheckpointTuple)."""

    checkpoint_id: str
    checkpoint_ns: str
    parent_checkpoint_id: str | None
    created_at: str | None
    step: int | None
    source: str | None
    run_id: str | None
    channels: list[str]
    pending_writes: int

    @staticmethod
    def resolve_checkpoint_id(item) -> str:
        return item.config["configurable"]["checkpoint_id"]

    @staticmethod
    def resolve_checkpoint_ns(item) -> str:
        return item.config["configurable"].get("checkpoint_ns", "")

    @staticmethod
    def resolve_parent_checkpoint_id(item) -> str | None:
        return (item.parent_config or {}).get("configurable", {}).get("checkpoint_id")

    @staticmethod
    def resolve_created_at(item) -> str | None:
        return item.checkpoint.get("ts")

    @staticmethod
    def resolve_step(item) -> int | None:
        return (item.metadata or {}).get("step")

    @staticmethod
    def resolve_source(item) -> str | None:
        return (item.metadata or {}).get("source")

    @staticmethod
    def resolve_run_id(item) -> str | None:
        return (item.metadata or {}).get("run_id")

    @staticmethod
    def resolve_channels(item) -> list[str]:
        return sorted(item.checkpoint.get("channel_versions", {}))

    @staticmethod
    def resolve_pending_writes(item) -> int:
        return len(item.pending_writes or [])


class Timeline(Schema):
    items: list[CheckpointOut]
    next_before: str | None


class Restored(Schema):
    checkpoint: Json
    thread: ThreadOut


@router.get(
    "/threads/{thread_id}/checkpoints",
    response={200: Timeline, 404: Detail, 422: Invalid},
    summary="A thread's checkpoint timeline",
)
def timeline(
    request,
    thread_id: str,
    limit: int = Query(50, ge=1, le=1000),
    before: str | None = Query(None, max_length=64, pattern=CHECKPOINT_ID),
):
    """Newest first; ``next_before`` (a checkpoint id) leads to the older ones."""
    thread = get_thread(request, thread_id)
    config = {"configurable": {"thread_id": str(thread.pk), "checkpoint_ns": ""}}
    before_config = {"configurable": {"checkpoint_id": before}} if before else None
    items = list(DjangoSaver().list(config, before=before_config, limit=limit))
    last = items[-1].config["configurable"]["checkpoint_id"] if len(items) == limit else None
    return {"items": items, "next_before": last}


@router.post(
    "/threads/{thread_id}/restore",
    response={200: Restored, 404: Detail, 409: Detail, 422: Invalid},
    summary="Make a checkpoint the thread's head again",
)
def restore(request, thread_id: str, body: CheckpointAction):
    thread = get_thread(request, thread_id)
    try:
        config = services.restore(
            thread, body.checkpoint_id, actor=request.auth, expected_version=body.expected_version
        )
    except services.CheckpointNotFound as exc:
        raise HttpError(404, str(exc)) from None
    thread.refresh_from_db()
    return {"checkpoint": config["configurable"], "thread": thread}


@router.post(
    "/threads/{thread_id}/fork",
    response={200: ThreadOut, 404: Detail, 422: Invalid},
    summary="A new thread whose history ends at a checkpoint",
)
def fork(request, thread_id: str, body: CheckpointAction):
    thread = get_thread(request, thread_id)
    try:
        forked = services.fork(thread, body.checkpoint_id, actor=request.auth)
    except services.CheckpointNotFound as exc:
        raise HttpError(404, str(exc)) from None
    return get_thread(request, forked.pk)
