"""What the API's routes share: strict request bodies, limits, the time format, who may
see what (another owner's object is a 404), the error answers, and the shapes answered
by more than one part of the API (a thread, an interrupt)."""

import uuid
from datetime import datetime
from typing import Annotated, Any

from django.conf import settings
from django.db import connection
from django.db.models import Q
from ninja import Schema
from ninja.errors import HttpError
from pydantic import ConfigDict, PlainSerializer, WithJsonSchema

from core.metadata import InvalidJSON, normalize_metadata
from sessions_app import services as sessions
from sessions_app.models import Session
from threads_app import services
from threads_app.models import Run, Thread, Workflow

Json = dict[str, Any]

MAX_INT = 2**31 - 1  # pagination numbers beyond this are refused (422), not passed on


def page_size(value: int) -> int:
    """A page size within 1 and STATEHOUSE_API_MAX_LIMIT."""
    return max(1, min(int(value), settings.STATEHOUSE_API_MAX_LIMIT))


def _iso(value: datetime) -> str:
    return value.isoformat()


# A time as the API writes it: ISO 8601 with microseconds and the UTC offset.
Time = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class Strict(Schema):
    """Request bodies: unknown fields are refused (422 naming the field)."""

    model_config = ConfigDict(extra="forbid")


# --- errors -------------------------------------------------------------------------


class Detail(Schema):
    """An error, said in words."""

    detail: str


class Invalid(Schema):
    """A request refused as invalid: in words, or ninja's list of errors (each with the
    ``loc`` of the value it refuses)."""

    detail: str | list[Json]


# --- who may see what: another owner's object is a 404 ------------------------------


def is_staff(user) -> bool:
    return bool(user.is_active and user.is_staff)


def _pk(value, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise HttpError(404, f"{what} {value} not found") from None


def get_thread(request, thread_id, with_state: bool = False) -> Thread:
    """The caller's thread (404 if it has none of that id); ``with_state`` brings what a
    read of its current state needs in the same statement."""
    pk = _pk(thread_id, "Thread")
    if with_state:
        thread = services.visible_with_state(request.auth, pk)
    else:
        threads = services.visible_threads(request.auth).select_related("session", "workflow")
        thread = threads.filter(pk=pk).first()
    if thread is None:
        raise HttpError(404, f"Thread {thread_id} not found")
    return thread


def get_run(request, thread_id, run_id) -> Run:
    thread = get_thread(request, thread_id)
    runs = Run.objects.filter(thread=thread).select_related("thread", "workflow")
    run = runs.filter(pk=_pk(run_id, "Run")).first()
    if run is None:
        raise HttpError(404, f"Run {run_id} not found")
    return run


def get_workflow(request, assistant_id, write: bool = False) -> Workflow:
    """The assistant (a workflow id or a graph id); with ``write``, one the caller may
    change: system assistants (409) and other users' (404) are read-only for non-staff."""
    try:
        workflow = services.resolve_workflow(assistant_id, user=request.auth)
    except services.WorkflowNotFound:
        raise HttpError(404, f"Assistant {assistant_id} not found") from None
    if write and not is_staff(request.auth) and workflow.owner_id != request.auth.pk:
        raise HttpError(404 if workflow.owner_id else 409, "This assistant cannot be changed")
    return workflow


def get_session(request, session_id) -> Session:
    visible = sessions.visible_sessions(request.auth).select_related("owner")
    session = visible.filter(pk=_pk(session_id, "Session")).first()
    if session is None:
        raise HttpError(404, f"Session {session_id} not found")
    return session


def json_contains(queryset, field: str, wanted: Json | None):
    """Filter on JSON containment: PostgreSQL's @> (GIN-indexable), key by key elsewhere."""
    if not wanted:
        return queryset
    try:
        wanted = normalize_metadata(wanted)
    except InvalidJSON as exc:
        raise HttpError(422, f"{field} filter: {exc}") from None
    if queryset.db == "default" and connection.vendor == "postgresql":
        return queryset.filter(**{f"{field}__contains": wanted})
    condition = Q()
    for key, value in wanted.items():
        condition &= Q(**{f"{field}__{key}": value})
    return queryset.filter(condition)


# --- shapes answered by several parts of the API ------------------------------------


class Interrupt(Schema):
    value: Any
    id: str | None


class ThreadOut(Schema):
    """A thread, as LangGraph Server answers one; its metadata names its session (and
    its graph and assistant once it has one)."""

    thread_id: uuid.UUID
    created_at: Time
    updated_at: Time
    state_updated_at: Time
    metadata: Json
    status: Thread.Status
    values: Any
    interrupts: dict[str, list[Interrupt]]
    config: Json
    error: str | None

    @staticmethod
    def resolve_thread_id(thread: Thread) -> uuid.UUID:
        return thread.pk

    @staticmethod
    def resolve_state_updated_at(thread: Thread) -> datetime:
        return thread.updated_at

    @staticmethod
    def resolve_metadata(thread: Thread) -> Json:
        metadata = dict(thread.metadata)
        metadata.setdefault("session_id", str(thread.session_id))
        if thread.workflow_id:
            metadata.setdefault("graph_id", thread.workflow.graph_id)
            metadata.setdefault("assistant_id", str(thread.workflow_id))
        return metadata

    @staticmethod
    def resolve_interrupts(thread: Thread) -> dict[str, list[Json]]:
        """The thread's interrupts by the task that raised them."""
        interrupts: dict[str, list[Json]] = {}
        for item in thread.interrupts or []:
            task = item.get("task_id") or ""
            interrupts.setdefault(task, []).append(
                {"value": item.get("value"), "id": item.get("id")}
            )
        return interrupts

    @staticmethod
    def resolve_error(thread: Thread) -> str | None:
        return thread.error or None
