"""History's receiver on the state bus: one StateEvent per change, in the transaction of
the changes, those of one state manager call written in one statement."""

from functools import cache

from django.db import connections

from core.events import StateChange
from history_app.models import StateEvent

# Batches far below any backend's limit on parameters (SQLite's is 999 at the least).
_BATCH = 50


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


@cache
def _fields() -> tuple:
    return tuple(field for field in StateEvent._meta.concrete_fields if not field.primary_key)


@cache
def _insert_sql(rows: int) -> str:
    """The INSERT of ``rows`` StateEvents: the model's table and column names and
    placeholders only (the values are bound). Written out rather than by bulk_create,
    whose compilation cost about 1 ms of CPU per state manager call."""
    fields = _fields()
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    columns = ", ".join(f'"{field.column}"' for field in fields)
    table = StateEvent._meta.db_table
    return f'INSERT INTO "{table}" ({columns}) VALUES {", ".join([row] * rows)}'  # noqa: S608


def record_state_events(sender, changes: list[StateChange], **kwargs) -> None:
    """Connected to ``state_changed_batch``: the StateEvents of one call's changes, the
    values prepared by the fields as the ORM prepares them."""
    if not changes:
        return
    connection = connections[changes[0].using]
    fields = _fields()
    events = [_state_event(change) for change in changes]
    with connection.cursor() as cursor:
        for start in range(0, len(events), _BATCH):
            batch = events[start : start + _BATCH]
            params = [
                field.get_db_prep_save(event[field.attname], connection)
                for event in batch
                for field in fields
            ]
            cursor.execute(_insert_sql(len(batch)), params)
