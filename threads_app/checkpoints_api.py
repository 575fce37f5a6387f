"""Statehouse's API for a thread's checkpoints: its timeline, restore and fork.

It lives with the threads (whose lookup, ownership and API shape it uses) and calls the
checkpoint module's services, so that ``checkpoints_app`` never imports ``threads_app``.
"""

from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import ConfigDict, Field

from checkpoints_app import services
from checkpoints_app.saver import DjangoSaver
from threads_app.api import get_thread, thread_out

router = Router(tags=["Checkpoints"])


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class CheckpointAction(Strict):
    checkpoint_id: str = Field(min_length=1, max_length=64, pattern=r"^[\w\-.:]+$")
    expected_version: int | None = Field(default=None, ge=1, le=2**31 - 1)


def checkpoint_out(item) -> dict:
    configurable = item.config["configurable"]
    parent = (item.parent_config or {}).get("configurable", {})
    metadata = item.metadata or {}
    return {
        "checkpoint_id": configurable["checkpoint_id"],
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
        "parent_checkpoint_id": parent.get("checkpoint_id"),
        "created_at": item.checkpoint.get("ts"),
        "step": metadata.get("step"),
        "source": metadata.get("source"),
        "run_id": metadata.get("run_id"),
        "channels": sorted(item.checkpoint.get("channel_versions", {})),
        "pending_writes": len(item.pending_writes or []),
    }


@router.get("/threads/{thread_id}/checkpoints", summary="A thread's checkpoint timeline")
def timeline(
    request,
    thread_id: str,
    limit: int = Query(50, ge=1, le=1000),
    before: str | None = Query(None, max_length=64, pattern=r"^[\w\-.:]+$"),
):
    thread = get_thread(request, thread_id)
    config = {"configurable": {"thread_id": str(thread.pk), "checkpoint_ns": ""}}
    before_config = {"configurable": {"checkpoint_id": before}} if before else None
    items = [
        checkpoint_out(item)
        for item in DjangoSaver().list(config, before=before_config, limit=limit)
    ]
    return {
        "items": items,
        "next_before": items[-1]["checkpoint_id"] if len(items) == limit else None,
    }


def _act(action, request, thread_id, body):
    thread = get_thread(request, thread_id)
    try:
        return action(thread, body)
    except services.CheckpointNotFound as exc:
        raise HttpError(404, str(exc)) from None


@router.post("/threads/{thread_id}/restore", summary="Make a checkpoint the thread's head again")
def restore(request, thread_id: str, body: CheckpointAction):
    def run(thread, body):
        config = services.restore(
            thread,
            body.checkpoint_id,
            actor=request.auth,
            expected_version=body.expected_version,
        )
        thread.refresh_from_db()
        return {"checkpoint": config["configurable"], "thread": thread_out(thread)}

    return _act(run, request, thread_id, body)


@router.post("/threads/{thread_id}/fork", summary="A new thread whose history ends at a checkpoint")
def fork(request, thread_id: str, body: CheckpointAction):
    def run(thread, body):
        forked = services.fork(thread, body.checkpoint_id, actor=request.auth)
        return thread_out(get_thread(request, forked.pk))

    return _act(run, request, thread_id, body)
