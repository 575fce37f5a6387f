"""History's receiver on the state bus: one StateEvent per change, in the transaction of
the changes, those of one state manager call written in one statement."""

from django.db import connections

from core.bulk_insert import insert_rows
from core.events import StateChange
from history_app.models import StateEvent


def _state_event(change: StateChange) -> dict:
    """The change's StateEvent, as its fields' values by attname (the id aside)."""
    if change.kind == "updated":
        old = {name: change.old_state[name] for name in change.changed_fields}
        new = {name: change.new_state[name] for name in change.changed_fields}
    else:
        old, new = change.old_state, change.new_state
    state = change.state
    session_id = change.entity_id if change.entity_type == "session" else state.get("session_id")
    return {
        "entity_type": change.entity_type,
        "entity_id": change.entity_id,
        "session_id": session_id,
        "kind": change.kind,
        "version": change.version,
        "changed_fields": list(change.changed_fields),
        "old": old,
        "new": new,
        "actor": change.actor,
        "created_at": change.timestamp,
    }


def record_state_events(sender, changes: list[StateChange], **kwargs) -> None:
    """Connected to ``state_changed_batch``: the StateEvents of one call's changes
    (core.bulk_insert: one statement, built once)."""
    if not changes:
        return
    insert_rows(
        StateEvent, [_state_event(change) for change in changes], connections[changes[0].using]
    )
