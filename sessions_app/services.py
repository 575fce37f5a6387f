"""Session use cases, and the aggregate of a session's threads."""

import uuid

from django.db import NotSupportedError, transaction
from django.db.models import DateTimeField, F, Func, IntegerField, JSONField, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Greatest, JSONObject, NullIf

from core import state
from core.metadata import normalize_metadata
from core.statuses import ACTIVE_THREAD_STATUSES
from core.time import now
from sessions_app.models import Session


def create_session(owner, title: str = "", metadata: dict | None = None, actor=None) -> Session:
    return state.create_state(
        "session",
        {"owner": owner, "title": title, "metadata": metadata or {}},
        actor=actor or owner,
    )


class _MergedCounts(Func):
    """A JSON object with the keys of another set over it, those set to null removed."""

    output_field = JSONField()

    def as_sql(self, compiler, connection, **extra_context):
        raise NotSupportedError("the session aggregate needs PostgreSQL or SQLite")

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler,
            connection,
            template="jsonb_strip_nulls(%(expressions)s)",
            arg_joiner=" || ",
            **extra_context,
        )

    def as_sqlite(self, compiler, connection, **extra_context):
        # JSON merge patch (RFC 7396): a null removes its key.
        return super().as_sql(compiler, connection, function="json_patch", **extra_context)


def _plus(field: str, delta: int):
    """``field + delta``, never below 0."""
    return Greatest(F(field) + delta, 0)


def add_thread_counts(session_id, statuses: dict[str, int], at=None, using: str = "default"):
    """Count threads in (or out of) the session's aggregate with one UPDATE: ``statuses``
    maps a thread status to the threads gained (or lost, negative) in it; the thread
    count, the active count and ``threads_by_status`` (statuses with no thread left are
    removed) follow, and ``last_activity_at`` becomes ``at`` if that is later.

    Called by the thread receiver on the state bus, in the transaction of the thread's
    change, so it writes the row directly rather than through the state manager (whose
    announcement would re-enter the bus): the aggregate is derived bookkeeping, it bumps
    no version (a client's ``expected_version`` never conflicts with a thread's progress)
    and records no StateEvent (the thread's own change is the event). Counters added in
    the database, not read and written back: concurrent changes of threads of one session
    queue on the row's lock and each adds to what the one before committed. Threads
    before sessions, as everywhere (see history_app.recording), so the two never deadlock.
    A count never goes below 0.
    """
    statuses = {status: n for status, n in statuses.items() if n}
    updates: dict = {}
    total = sum(statuses.values())
    active = sum(n for status, n in statuses.items() if status in ACTIVE_THREAD_STATUSES)
    if total:
        updates["thread_count"] = _plus("thread_count", total)
    if active:
        updates["active_thread_count"] = _plus("active_thread_count", active)
    if statuses:
        counts = {
            status: NullIf(
                Greatest(
                    Coalesce(Cast(KT(f"threads_by_status__{status}"), IntegerField()), 0) + n, 0
                ),
                0,
            )
            for status, n in statuses.items()
        }
        updates["threads_by_status"] = _MergedCounts(F("threads_by_status"), JSONObject(**counts))
    if at is not None:
        moment = Value(at, output_field=DateTimeField())
        # Greatest is null on SQLite when one side is: a session's first activity.
        updates["last_activity_at"] = Coalesce(Greatest("last_activity_at", moment), moment)
    if updates:
        Session._base_manager.using(using).filter(pk=session_id).update(**updates)


def close_session(session_id, actor=None, expected_version: int | None = None) -> Session:
    return state.update_state(
        "session",
        session_id,
        {"status": Session.Status.CLOSED, "closed_at": now()},
        expected_version=expected_version,
        actor=actor,
    )


def visible_sessions(user):
    """``user``'s sessions (staff: every session)."""
    if user.is_active and user.is_staff:
        return Session.objects.all()
    return Session.objects.filter(owner=user)


class SessionNotFound(LookupError):
    """No session of that id that the caller may see."""


def session_for_new_thread(user, session_id=None) -> Session:
    """The session a new thread of ``user``'s joins: the one ``session_id`` names (one
    ``user`` may see; SessionNotFound otherwise), or without it a new session of theirs
    (``created_by`` "api": LangGraph clients name no session)."""
    if not session_id:
        return state.create_state(
            "session",
            {"owner": user, "title": "", "metadata": {"created_by": "api"}},
            actor=user,
        )
    try:
        pk = uuid.UUID(str(session_id))
    except ValueError:
        raise SessionNotFound(f"Session {session_id} not found") from None
    session = visible_sessions(user).filter(pk=pk).first()
    if session is None:
        raise SessionNotFound(f"Session {session_id} not found")
    return session


def patch_session(session_id, changes: dict, expected_version=None, actor=None) -> Session:
    """Apply ``changes`` (title, metadata, context), the metadata merged into the
    session's, under the row's lock: without ``expected_version`` concurrent patches
    queue on the lock and all apply (StateConflict when it is stale)."""
    changes = dict(changes)
    if "metadata" in changes:
        changes["metadata"] = normalize_metadata(changes["metadata"])
    with transaction.atomic():
        locked = Session.objects.select_for_update().filter(pk=session_id).first()
        if locked is None:
            raise SessionNotFound(f"Session {session_id} not found")
        if "metadata" in changes:
            changes["metadata"] = locked.metadata | changes["metadata"]
        return state.update_state(
            "session", locked.pk, changes, expected_version=expected_version, actor=actor
        )
