"""Statehouse's own API for sessions: their threads, messages and state-change history."""

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from ninja import Query, Router, Schema
from ninja.errors import HttpError
from pydantic import ConfigDict, Field

from core import state
from core.metadata import normalize_metadata
from history_app.models import Message, StateEvent
from sessions_app import services
from sessions_app.models import Session

router = Router(tags=["Sessions"])

Json = dict[str, Any]
MAX_INT = 2**31 - 1


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


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
    limit: int = Field(default=50, ge=1, le=MAX_INT)
    cursor: str | None = None


def _iso(value):
    return value.isoformat() if value else None


def session_out(session: Session) -> Json:
    return {
        "session_id": str(session.pk),
        "owner": session.owner.get_username(),
        "title": session.title,
        "status": session.status,
        "metadata": session.metadata,
        "context": session.context,
        "version": session.version,
        "thread_count": session.thread_count,
        "active_thread_count": session.active_thread_count,
        "threads_by_status": session.threads_by_status,
        "last_activity_at": _iso(session.last_activity_at),
        "usage": {
            "calls": session.total_calls,
            "input_tokens": session.total_input_tokens,
            "output_tokens": session.total_output_tokens,
            "total_tokens": session.total_tokens,
            "cost_usd": str(session.total_cost),
        },
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
        "closed_at": _iso(session.closed_at),
    }


def visible_sessions(user):
    sessions = Session.objects.select_related("owner")
    if user.is_active and user.is_staff:
        return sessions
    return sessions.filter(owner=user)


def get_session(request, session_id) -> Session:
    try:
        pk = uuid.UUID(str(session_id))
    except ValueError:
        raise HttpError(404, f"Session {session_id} not found") from None
    session = visible_sessions(request.auth).filter(pk=pk).first()
    if session is None:
        raise HttpError(404, f"Session {session_id} not found")
    return session


def _limit(value: int) -> int:
    return max(1, min(int(value), settings.STATEHOUSE_API_MAX_LIMIT))


# --- cursor pagination: newest first, stable under inserts --------------------------


def encode_cursor(created_at: datetime, pk) -> str:
    raw = json.dumps([created_at.isoformat(), str(pk)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, pk = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created_at), str(uuid.UUID(pk))
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError):
        raise HttpError(400, "cursor is not valid: pass next_cursor from a previous page") from None


def page(queryset, limit: int, cursor: str | None, out) -> Json:
    """One page ordered by (-created_at, -id) with an opaque cursor to the next one."""
    queryset = queryset.order_by("-created_at", "-id")
    if cursor:
        created_at, pk = decode_cursor(cursor)
        queryset = queryset.filter(
            Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=pk)
        )
    limit = _limit(limit)
    rows = list(queryset[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [out(row) for row in rows],
        "next_cursor": encode_cursor(rows[-1].created_at, rows[-1].pk) if more else None,
    }


# --- routes -------------------------------------------------------------------------


@router.post("/sessions", summary="Create a session")
def create_session(request, body: SessionCreate):
    session = services.create_session(
        request.auth, body.title, normalize_metadata(body.metadata), actor=request.auth
    )
    return session_out(Session.objects.select_related("owner").get(pk=session.pk))


@router.get("/sessions", summary="List sessions (newest first, cursor pagination)")
def list_sessions(request, filters: Query[SessionFilters]):
    sessions = visible_sessions(request.auth)
    if filters.status:
        sessions = sessions.filter(status=filters.status)
    if filters.q:
        sessions = sessions.filter(title__icontains=filters.q)
    if filters.created_after:
        sessions = sessions.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        sessions = sessions.filter(created_at__lt=filters.created_before)
    return page(sessions, filters.limit, filters.cursor, session_out)


@router.get("/sessions/{session_id}", summary="Get a session")
def read_session(request, session_id: str):
    return session_out(get_session(request, session_id))


@router.patch("/sessions/{session_id}", summary="Update a session (optimistic: expected_version)")
def patch_session(request, session_id: str, body: SessionPatch):
    """Metadata is merged into the session's (as a thread's PATCH does); with no
    ``expected_version``, concurrent PATCHes queue on the row's lock and all apply."""
    session = get_session(request, session_id)
    changes = body.model_dump(exclude_none=True, exclude={"expected_version"})
    if "metadata" in changes:
        changes["metadata"] = normalize_metadata(changes["metadata"])
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session.pk).first()
        if locked is None:
            raise HttpError(404, f"Session {session_id} not found")
        if "metadata" in changes:
            changes["metadata"] = locked.metadata | changes["metadata"]
        state.update_state(
            "session",
            locked.pk,
            changes,
            expected_version=body.expected_version,
            actor=request.auth,
        )
    return session_out(get_session(request, session_id))


@router.post("/sessions/{session_id}/close", summary="Close a session")
def close_session(
    request, session_id: str, expected_version: int | None = Query(None, ge=1, le=MAX_INT)
):
    session = get_session(request, session_id)
    if session.status == Session.Status.CLOSED:
        raise HttpError(409, f"Session {session_id} is closed already")
    services.close_session(session.pk, actor=request.auth, expected_version=expected_version)
    return session_out(get_session(request, session_id))


@router.get("/sessions/{session_id}/threads", summary="The session's threads")
def session_threads(
    request, session_id: str, limit: int = Query(50, ge=1, le=MAX_INT), cursor: str | None = None
):
    from threads_app.api import thread_out

    session = get_session(request, session_id)
    threads = session.threads.select_related("workflow")
    return page(threads, limit, cursor, thread_out)


def message_out(message: Message) -> Json:
    return {
        "id": message.pk,
        "thread_id": str(message.thread_id),
        "run_id": str(message.run_id) if message.run_id else None,
        "sequence": message.sequence,
        "role": message.role,
        "content": message.content,
        "message_id": message.message_id,
        "created_at": _iso(message.created_at),
    }


@router.get("/sessions/{session_id}/messages", summary="The session's messages, oldest first")
def session_messages(
    request,
    session_id: str,
    limit: int = Query(100, ge=1, le=MAX_INT),
    after_id: int = Query(0, ge=0, le=2**62),
):
    session = get_session(request, session_id)
    messages = Message.objects.filter(session=session, pk__gt=after_id).order_by("pk")
    rows = list(messages[: _limit(limit)])
    return {
        "items": [message_out(m) for m in rows],
        "next_after_id": rows[-1].pk if len(rows) == _limit(limit) else None,
    }


def event_out(event: StateEvent) -> Json:
    return {
        "id": event.pk,
        "entity_type": event.entity_type,
        "entity_id": str(event.entity_id),
        "kind": event.kind,
        "version": event.version,
        "changed_fields": event.changed_fields,
        "old": event.old,
        "new": event.new,
        "actor": event.actor,
        "created_at": _iso(event.created_at),
    }


@router.get("/sessions/{session_id}/history", summary="State changes in the session, newest first")
def session_history(
    request,
    session_id: str,
    limit: int = Query(100, ge=1, le=MAX_INT),
    before_id: int | None = Query(None, ge=1, le=2**62),
    entity_type: str = "",
):
    session = get_session(request, session_id)
    events = StateEvent.objects.filter(session_id=session.pk).order_by("-id")
    if before_id:
        events = events.filter(pk__lt=before_id)
    if entity_type:
        events = events.filter(entity_type=entity_type)
    rows = list(events[: _limit(limit)])
    return {
        "items": [event_out(e) for e in rows],
        "next_before_id": rows[-1].pk if len(rows) == _limit(limit) else None,
    }
