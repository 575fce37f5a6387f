"""Session use cases."""

from django.db.models import Count

from core import state
from core.state import StateConflict
from core.time import now
from sessions_app.models import Session

# Threads that are not done: running, or waiting for a human.
ACTIVE_THREAD_STATUSES = ("busy", "interrupted")
AGGREGATE_RETRIES = 5


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


def refresh_thread_aggregate(session_id, at=None, actor=None, using: str = "default") -> None:
    """Recompute the session's thread aggregate and record it through the state manager.

    Two threads of one session changing at once both refresh it; the loser of the
    compare-and-set recomputes from what the winner committed and tries again.
    """
    for attempt in range(AGGREGATE_RETRIES):
        changes = thread_aggregate(session_id, using=using)
        if at is not None:
            changes["last_activity_at"] = at
        try:
            state.update_state("session", session_id, changes, actor=actor, using=using)
            return
        except state.EntityNotFound:
            return  # the session is being deleted with its threads
        except StateConflict:
            if attempt == AGGREGATE_RETRIES - 1:
                raise


def close_session(session_id, actor=None, expected_version: int | None = None) -> Session:
    return state.update_state(
        "session",
        session_id,
        {"status": Session.Status.CLOSED, "closed_at": now()},
        expected_version=expected_version,
        actor=actor,
    )
