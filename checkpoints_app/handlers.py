"""Checkpoints' receivers: a restore point when a thread starts running (state bus), and
a thread's checkpoints deleted with the thread (Django's post_delete)."""

from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce

from checkpoints_app.models import Checkpoint, RestorePoint
from core.events import StateChange
from core.statuses import ThreadStatus


def record_restore_point(sender, change: StateChange, **kwargs) -> None:
    """When a thread becomes busy, remember its latest checkpoint (root namespace) and
    its state, in the transaction of the change (connected for threads only): one
    INSERT, the checkpoint's id found by a subquery in it."""
    if change.new_state is None or change.new_state.get("status") != ThreadStatus.BUSY:
        return
    if change.old_state is not None and change.old_state.get("status") == ThreadStatus.BUSY:
        return
    state = change.new_state
    latest = (
        Checkpoint.objects.using(change.using)
        .filter(thread_id=str(change.entity_id), checkpoint_ns="")
        .order_by("-checkpoint_id")
        .values("checkpoint_id")[:1]
    )
    RestorePoint.objects.using(change.using).create(
        thread_id=change.entity_id,
        session_id=state.get("session_id"),
        thread_version=change.version,
        checkpoint_ns="",
        checkpoint_id=Coalesce(Subquery(latest), Value("")),
        trigger_reason="state_change",
        snapshot=state,
        created_at=change.timestamp,
    )


def delete_thread_checkpoints(sender, instance, using, **kwargs) -> None:
    """A deleted thread takes its checkpoints along, in the transaction of the delete.

    ``post_delete`` rather than the state bus: a thread also goes in a cascade (its
    session deleted), which the state manager never sees. Checkpoints are keyed by
    LangGraph's thread id, not a foreign key, so nothing else would remove them.
    """
    from checkpoints_app.saver import DjangoSaver

    DjangoSaver(using=using).delete_thread(str(instance.pk))
