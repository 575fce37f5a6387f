"""Statehouse's own API for sessions: their threads, messages and state-change history."""

import uuid
from datetime import datetime
from typing import Any, Literal

from ninja import Query, Router, Schema
from ninja.errors import HttpError
from ninja.pagination import paginate
from pydantic import Field

from api.common import (
    MAX_INT,
    Detail,
    Invalid,
    Json,
    Strict,
    ThreadOut,
    Time,
    get_session,
)
from api.pagination import AfterId, BeforeId, NewestFirst
from core.metadata import normalize_metadata
from history_app.models import Message, StateEvent
from sessions_app import services
from sessions_app.models import Session

router = Router(tags=["Sessions"])


class SessionCreate(Strict):
    title: str = ""
    metadata: Json | None = None


class SessionPatch(Strict):
    title: str | None = None
    metadata: Json | None = None
    context: Json | None = None
    expected_version: int | None = Field(default=None, ge=1, le=MAX_INT)


class SessionFilters(Schema):
    status: Literal["active", "closed"] | None = None
    q: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class Usage(Schema):
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: str


class SessionOut(Schema):
    """A session with the aggregate of its threads and its LLM usage."""

    session_id: uuid.UUID
    owner: str
    title: str
    status: Session.Status
    metadata: Json
    context: Json
    version: int
    thread_count: int
    active_thread_count: int
    threads_by_status: dict[str, int]
    last_activity_at: Time | None
    usage: Usage
    created_at: Time
    updated_at: Time
    closed_at: Time | None

    @staticmethod
    def resolve_session_id(session: Session) -> uuid.UUID:
        return session.pk

    @staticmethod
    def resolve_owner(session: Session) -> str:
        return session.owner.get_username()

    @staticmethod
    def resolve_usage(session: Session) -> Json:
        return {
            "calls": session.total_calls,
            "input_tokens": session.total_input_tokens,
            "output_tokens": session.total_output_tokens,
            "total_tokens": session.total_tokens,
            "cost_usd": str(session.total_cost),
        }


class MessageOut(Schema):
    id: int
    thread_id: uuid.UUID
    run_id: uuid.UUID | None
    sequence: int
    role: str
    content: Any
    message_id: str
    created_at: Time


class EventOut(Schema):
    """One state change (a StateEvent) of the session, its threads or their runs."""

    id: int
    entity_type: str
    entity_id: uuid.UUID
    kind: str
    version: int
    changed_fields: list[str]
    old: Any
    new: Any
    actor: str
    created_at: Time


@router.post("/sessions", response={200: SessionOut, 422: Invalid}, summary="Create a session")
def create_session(request, body: SessionCreate):
    session = services.create_session(
        request.auth, body.title, normalize_metadata(body.metadata), actor=request.auth
    )
    return Session.objects.select_related("owner").get(pk=session.pk)


@router.get(
    "/sessions",
    response={200: list[SessionOut], 400: Detail, 422: Invalid},
    summary="List sessions (newest first, cursor pagination)",
)
@paginate(NewestFirst)
def list_sessions(request, filters: Query[SessionFilters]):
    sessions = services.visible_sessions(request.auth).select_related("owner")
    if filters.status:
        sessions = sessions.filter(status=filters.status)
    if filters.q:
        sessions = sessions.filter(title__icontains=filters.q)
    if filters.created_after:
        sessions = sessions.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        sessions = sessions.filter(created_at__lt=filters.created_before)
    return sessions


@router.get(
    "/sessions/{session_id}", response={200: SessionOut, 404: Detail}, summary="Get a session"
)
def read_session(request, session_id: str):
    return get_session(request, session_id)


@router.patch(
    "/sessions/{session_id}",
    response={200: SessionOut, 404: Detail, 409: Detail, 422: Invalid},
    summary="Update a session (optimistic: expected_version)",
)
def patch_session(request, session_id: str, body: SessionPatch):
    """Metadata is merged into the session's (as a thread's PATCH does); with no
    ``expected_version``, concurrent PATCHes queue on the row's lock and all apply."""
    session = get_session(request, session_id)
    changes = body.model_dump(exclude_none=True, exclude={"expected_version"})
    services.patch_session(
        session.pk, changes, expected_version=body.expected_version, actor=request.auth
    )
    return get_session(request, session_id)


@router.post(
    "/sessions/{session_id}/close",
    response={200: SessionOut, 404: Detail, 409: Detail, 422: Invalid},
    summary="Close a session",
)
def close_session(
    request, session_id: str, expected_version: int | None = Query(None, ge=1, le=MAX_INT)
):
    session = get_session(request, session_id)
    if session.status == Session.Status.CLOSED:
        raise HttpError(409, f"Session {session_id} is closed already")
    services.close_session(session.pk, actor=request.auth, expected_version=expected_version)
    return get_session(request, session_id)


@router.get(
    "/sessions/{session_id}/threads",
    response={200: list[ThreadOut], 400: Detail, 404: Detail, 422: Invalid},
    summary="The session's threads",
)
@paginate(NewestFirst)
def session_threads(request, session_id: str):
    return get_session(request, session_id).threads.select_related("workflow")


@router.get(
    "/sessions/{session_id}/messages",
    response={200: list[MessageOut], 404: Detail, 422: Invalid},
    summary="The session's messages, oldest first",
)
@paginate(AfterId)
def session_messages(request, session_id: str):
    return Message.objects.filter(session=get_session(request, session_id))


@router.get(
    "/sessions/{session_id}/history",
    response={200: list[EventOut], 404: Detail, 422: Invalid},
    summary="State changes in the session, newest first",
)
@paginate(BeforeId)
def session_history(request, session_id: str, entity_type: str = ""):
    events = StateEvent.objects.filter(session_id=get_session(request, session_id).pk)
    if entity_type:
        events = events.filter(entity_type=entity_type)
    return events
