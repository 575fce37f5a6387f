"""Sessions' receiver on the state bus: keep each session's aggregate of its threads.

Connected for ``threads_app.Thread`` only. The aggregate is counted directly, in the
transaction of the thread's change (``sessions_app.services.add_thread_counts``), never
through the state manager: that would announce a session change from inside the
dispatch of the thread's.
"""

from collections import defaultdict

from core.events import StateChange
from sessions_app.services import add_thread_counts


def update_session_aggregate(sender, change: StateChange, **kwargs) -> None:
    """A thread created, deleted, or changing status or session: the thread leaves its
    old status (and session) and joins its new one."""
    if change.kind == "updated" and not (change.changed("status") or change.changed("session_id")):
        return
    counts: dict = defaultdict(lambda: defaultdict(int))  # session -> status -> threads
    for state, delta in ((change.old_state, -1), (change.new_state, 1)):
        if state and state.get("session_id"):
            counts[state["session_id"]][state["status"]] += delta
    # Sorted: two changes locking the same sessions lock them in one order.
    for session_id in sorted(counts, key=str):
        add_thread_counts(session_id, counts[session_id], at=change.timestamp, using=change.using)
