"""The session status page: its threads with live status, totals, recent messages and
state-change history. Staff see every session; an owner sees their own; others get 404."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import live
from core.consumers import is_staff
from core.views import fragment_name, optional_model
from sessions_app.models import Session

THREAD_LIMIT = 100
MESSAGE_LIMIT = 20
HISTORY_LIMIT = 50


def visible_sessions(user):
    sessions = Session.objects.select_related("owner")
    if is_staff(user):
        return sessions
    return sessions.filter(owner=user)


def session_context(session: Session) -> dict:
    Message = optional_model("history_app", "Message")
    StateEvent = optional_model("history_app", "StateEvent")
    messages = []
    if Message is not None:
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
    history = []
    if StateEvent is not None:
        history = list(StateEvent.objects.filter(session_id=session.pk)[:HISTORY_LIMIT])
    threads = session.threads.select_related("workflow").order_by("-created_at")
    return {
        "session": session,
        "threads": list(threads[:THREAD_LIMIT]),
        "more_threads": max(session.thread_count - THREAD_LIMIT, 0),
        "recent_messages": messages,
        "history": history,
    }


@never_cache
@require_GET
@login_required
def session_detail(request, pk):
    session = get_object_or_404(visible_sessions(request.user), pk=pk)
    fragment = fragment_name(request, {"body"})
    context = session_context(session)
    if fragment:
        return render(request, "status/session/_body.html", context)
    context["feed"] = live.feed_path("session", session.pk)
    return render(request, "status/session.html", context)
