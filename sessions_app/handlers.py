"""Sessions' receiver on the state bus: keep each session's aggregate of its threads."""

from core.events import StateChange
from sessions_app.services import refresh_thread_aggregate


def update_session_aggregate(sender, change: StateChange, **kwargs) -> None:
    if change.entity_type != "thread":
        return
    if change.kind == "updated" and not (change.changed("status") or change.changed("session_id")):
        return
    sessions = []
    for state in (change.old_state, change.new_state):
        session_id = state and state.get("session_id")
        if session_id and session_id not in sessions:
            sessions.append(session_id)
    for session_id in sessions:
        refresh_thread_aggregate(
            session_id, at=change.timestamp, actor=change.actor, using=change.using
        )
