"""History's receiver on the state bus: one StateEvent per change, same transaction."""

from core.events import StateChange
from history_app.models import StateEvent


def record_state_event(sender, change: StateChange, **kwargs) -> None:
    if change.kind == "updated":
        old = {name: change.old_state[name] for name in change.changed_fields}
        new = {name: change.new_state[name] for name in change.changed_fields}
    else:
        old, new = change.old_state, change.new_state
    state = change.state
    session_id = change.entity_id if change.entity_type == "session" else state.get("session_id")
    StateEvent.objects.using(change.using).create(
        entity_type=change.entity_type,
        entity_id=change.entity_id,
        session_id=session_id,
        kind=change.kind,
        version=change.version,
        changed_fields=list(change.changed_fields),
        old=old,
        new=new,
        actor=change.actor,
        created_at=change.timestamp,
    )
