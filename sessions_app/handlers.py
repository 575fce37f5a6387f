"""Sessions' receiver on the state bus: keep each session's aggregate of its threads.

Connected for ``threads_app.Thread`` only. The aggregate is written directly, in the
transaction of the thread's change (``sessions_app.services.refresh_thread_aggregate``),
never through the state manager: that would announce a session change from inside the
dispatch of the thread's.
"""

from core.events import StateChange
from sessions_app.services import refresh_thread_aggregate


def update_session_aggregate(sender, change: StateChange, **kwargs) -> None:
    if change.kind == "updated" and not (change.changed("status") or change.changed("session_id")):
        return
    sessions = {
        state["session_id"]
        for state in (change.old_state, change.new_state)
        if state and state.get("session_id")
    }
    # Sorted: two changes locking the same sessions lock them in one order.
    for session_id in sorted(sessions, key=str):
        refresh_thread_aggregate(session_id, at=change.timestamp, using=change.using)
