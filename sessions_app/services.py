"""Session use cases, and the aggregate of a session's threads."""

import uuid

from django.db import transaction
from django.db.models import Count

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


def thread_aggregate(session_id, using: str = "default") -> dict:
    """The session's thread counts, computed with one GROUP BY."""
    rows = (
        Session.objects.using(using)
        .filter(pk=session_id)
        .values_list("threads__status")
        .annotate(n=Count("threads__id"))
        .order_by()
    )
    by_status = {status: n for status, n in rows if status is not None}
    return {
        "thread_count": sum(by_status.values()),
        "active_thread_count": sum(by_status.get(s, 0) for s in ACTIVE_THREAD_STATUSES),
        "threads_by_status": dict(sorted(by_status.items())),
    }


def refresh_thread_aggregate(session_id, at=None, using: str = "default") -> None:
    """Recompute the session's thread aggregate and write it with one UPDATE.

    Called by the thread receiver on the state bus, in the transaction of the thread's
    change, so it writes the row directly rather than through the state manager (whose
    announcement would re-enter the bus): the aggregate is derived bookkeeping, it bumps
    no version (a client's ``expected_version`` never conflicts with a thread's progress)
    and records no StateEvent (the thread's own change is the event).

    The session row is locked first, then the threads are counted: a concurrent change
    of another thread of the session waits for our commit and then counts what we
    committed (on PostgreSQL each statement of a READ COMMITTED transaction sees what
    committed before it; SQLite has one writer at a time). Threads before sessions, as
    everywhere (see history_app.recording), so the two never deadlock.
    """
    sessions = Session._base_manager.using(using).filter(pk=session_id)
    with transaction.atomic(using=using, savepoint=False):
        locked = sessions.select_for_update().values_list("last_activity_at", flat=True)
        try:
            last_activity_at = locked.get()
        except Session.DoesNotExist:
            return  # the session is being deleted with its threads
        changes = thread_aggregate(session_id, using=using)
        if at is not None and (last_activity_at is None or at > last_activity_at):
            changes["last_activity_at"] = at
        sessions.update(**changes)


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
