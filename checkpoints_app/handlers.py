"""Checkpoints' receivers: a restore point when a thread starts running (state bus), and
a thread's checkpoints deleted with the thread (Django's post_delete)."""

import re
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections

from checkpoints_app.models import Checkpoint, RestorePoint
from core import write_batch
from core.events import StateChange
from core.statuses import ThreadStatus

# The restore point's fields given as values; its checkpoint_id is found by the INSERT.
_FIELDS = (
    "thread_id",
    "session_id",
    "thread_version",
    "checkpoint_ns",
    "trigger_reason",
    "snapshot",
    "created_at",
)


@cache
def _insert_sql(queued: bool = False) -> str:
    """The restore point's INSERT with the id of the thread's latest root checkpoint
    (or "") found by a subquery in it: the models' table and column names and
    placeholders only (the values are bound). Written out rather than built by the ORM,
    whose compilation cost about 1 ms of CPU at each run's start."""
    point, checkpoint = RestorePoint._meta, Checkpoint._meta
    columns = ", ".join(f'"{point.get_field(name).column}"' for name in _FIELDS)
    values = ", ".join(["%s"] * len(_FIELDS))
    latest = (
        f'SELECT "checkpoint_id" FROM "{checkpoint.db_table}"'  # noqa: S608
        ' WHERE "checkpoint_ns" = \'\' AND "thread_id" = %s ORDER BY "checkpoint_id" DESC LIMIT 1'
    )
    found = f"COALESCE(({latest}), '')"
    if queued:  # a write of a batch (core.write_batch): only if its guard holds
        casts = [_db_type(name) for name in _FIELDS]
        values = ", ".join(f"%s::{cast}" for cast in casts)
        return (
            f'INSERT INTO "{point.db_table}" ({columns}, "checkpoint_id")'
            f" SELECT {values}, {found} WHERE {write_batch.GUARD}"
        )
    return (
        f'INSERT INTO "{point.db_table}" ({columns}, "checkpoint_id")'  # noqa: S608
        f" VALUES ({values}, {found})"
    )


def _db_type(name: str) -> str:
    """A field's column type without a length (the column checks that)."""
    field = RestorePoint._meta.get_field(name)
    return re.sub(r"\(.*\)", "", field.db_type(connections[DEFAULT_DB_ALIAS]))


def record_restore_point(sender, change: StateChange, **kwargs) -> None:
    """When a thread becomes busy, remember its latest checkpoint (root namespace) and
    its state, in the transaction of the change (connected for threads only): one
    INSERT, the checkpoint's id found by a subquery in it."""
    if change.new_state is None or change.new_state.get("status") != ThreadStatus.BUSY:
        return
    if change.old_state is not None and change.old_state.get("status") == ThreadStatus.BUSY:
        return
    state = change.new_state
    connection = connections[change.using]
    values = {
        "thread_id": change.entity_id,
        "session_id": state.get("session_id"),
        "thread_version": change.version,
        "checkpoint_ns": "",
        "trigger_reason": "state_change",
        "snapshot": state,
        "created_at": change.timestamp,
    }
    meta = RestorePoint._meta
    params = [meta.get_field(name).get_db_prep_save(values[name], connection) for name in _FIELDS]
    params.append(str(change.entity_id))  # LangGraph's thread id, as checkpoints hold it
    table = RestorePoint._meta.db_table  # sent with the thread's change where it is batched
    write_batch.write(connection, _insert_sql(), _insert_sql(queued=True), params, table, False)


def delete_thread_checkpoints(sender, instance, using, **kwargs) -> None:
    """A deleted thread takes its checkpoints along, in the transaction of the delete.

    ``post_delete`` rather than the state bus: a thread also goes in a cascade (its
    session deleted), which the state manager never sees. Checkpoints are keyed by
    LangGraph's thread id, not a foreign key, so nothing else would remove them.
    """
    from checkpoints_app.saver import DjangoSaver

    DjangoSaver(using=using).delete_thread(str(instance.pk))
