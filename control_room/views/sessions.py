"""The session status page: its threads with live status, totals, recent messages and
state-change history. Staff see every session; an owner sees their own; others get 404.

The state changes leave out, unless ``?bookkeeping=1``, the session's own aggregate
updates (thread counts, last activity): the runtime writes one at every thread change,
and they would drown the changes an operator looks for.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from control_room.pages import fragment_name
from core import live
from history_app.models import Message, StateEvent
from sessions_app import services
from sessions_app.models import Session

THREAD_LIMIT = 100
MESSAGE_LIMIT = 20
HISTORY_LIMIT = 50
HISTORY_SCAN = 2000  # state changes looked through for HISTORY_LIMIT shown ones
# A session's fields that only follow its threads (sessions_app.services).
BOOKKEEPING_FIELDS = frozenset(
    {"thread_count", "active_thread_count", "threads_by_status", "last_activity_at"}
)


def is_bookkeeping(event) -> bool:
    """A session update that changed nothing but its aggregate of threads."""
    fields = set(event.changed_fields or [])
    return (
        event.entity_type == "session"
        and event.kind == "updated"
        and bool(fields)
        and fields <= BOOKKEEPING_FIELDS
    )


def session_history(session: Session, bookkeeping: bool) -> dict:
    """The newest state changes of the session and its threads and runs."""
    events = StateEvent.objects.filter(session_id=session.pk).order_by("-id")
    if bookkeeping:
        return {"rows": list(events[:HISTORY_LIMIT]), "hidden": 0, "more": None}
    rows, hidden = [], 0
    for event in events[:HISTORY_SCAN].iterator(chunk_size=500):
        if is_bookkeeping(event):
            hidden += 1
        elif len(rows) < HISTORY_LIMIT:
            rows.append(event)
        else:
            break
    return {"rows": rows, "hidden": hidden, "more": len(rows) >= HISTORY_LIMIT}


def session_context(session: Session, bookkeeping: bool = False) -> dict:
    recent = Message.objects.filter(session=session)
    messages = [
        {
            "role": row.role,
            "thread_id": row.thread_id,
            "text": live.message_text(row.content),
            "tool_calls": live.tool_call_labels((row.extra or {}).get("tool_calls")),
            "created_at": row.created_at,
        }
        for row in reversed(recent.order_by("-id")[:MESSAGE_LIMIT])
    ]
    history = session_history(session, bookkeeping)
    threads = session.threads.select_related("workflow").order_by("-created_at")
    shown = list(threads[:THREAD_LIMIT])
    thread_total = len(shown) if len(shown) < THREAD_LIMIT else threads.count()
    return {
        "session": session,
        "threads": shown,
        "thread_total": thread_total,
        "more_threads": thread_total > len(shown),
        "recent_messages": messages,
        "history": history["rows"],
        "history_hidden": history["hidden"],
        "history_more": history["more"],
        "bookkeeping": bookkeeping,
    }


@never_cache
@require_GET
@login_required
def session_detail(request, pk):
    sessions = services.visible_sessions(request.user).select_related("owner")
    session = get_object_or_404(sessions, pk=pk)
    fragment = fragment_name(request, {"body"})
    context = session_context(session, bookkeeping=request.GET.get("bookkeeping") == "1")
    if fragment:
        return render(request, "status/session/_body.html", context)
    context["feed"] = live.feed_path("session", session.pk)
    return render(request, "status/session.html", context)
