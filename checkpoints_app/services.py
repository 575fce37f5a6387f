"""Checkpoint use cases for operators: restore, fork, retention (the admin now, the API later).

Thread changes go through the state manager (``core.state``), so they are versioned,
recorded in history and pushed live; the Thread model is reached only through
``core.state.entity_model("thread")``: this app does not import threads_app. What a
checkpoint makes of its thread (values, interrupts, status) follows
``core.thread_state``, the rules threads_app.lifecycle writes by too.
"""

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Min
from langgraph.checkpoint.base import copy_checkpoint
from langgraph.checkpoint.base.id import uuid6

from checkpoints_app import serialization
from checkpoints_app.models import Checkpoint
from checkpoints_app.saver import DjangoSaver
from core import state
from core.statuses import ThreadStatus
from core.thread_state import written_state
from core.time import now


class CheckpointNotFound(state.StateError, LookupError):
    def __init__(self, thread_id: object, checkpoint_id: str):
        self.thread_id = thread_id
        self.checkpoint_id = checkpoint_id
        super().__init__(f"thread {thread_id} has no checkpoint {checkpoint_id!r}")


def _thread(thread):
    model = state.entity_model("thread")
    if isinstance(thread, model):
        return thread
    try:
        return model._base_manager.get(pk=thread)
    except (model.DoesNotExist, ValidationError, ValueError, TypeError):
        raise state.EntityNotFound("thread", thread) from None


def _config(thread_id: str, checkpoint_id: str | None = None) -> dict:
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def _thread_state(checkpoint_tuple) -> dict[str, Any]:
    """The thread fields a checkpoint implies: values, interrupts and status."""
    values = checkpoint_tuple.checkpoint["channel_values"]
    return written_state(
        serialization.state_values(values),
        serialization.interrupts(checkpoint_tuple.pending_writes),
        bool(serialization.next_nodes(values)),
    )


def restore(
    thread,
    checkpoint_id: str,
    *,
    actor: Any = None,
    expected_version: int | None = None,
    saver: DjangoSaver | None = None,
):
    """Make a checkpoint's state the thread's head again.

    A new checkpoint (metadata ``source: "fork"``, ``restored_from``), a copy of the chosen
    one and its child (as LangGraph's forks are), becomes the thread's latest: the next run
    continues from it, running again the nodes the chosen checkpoint had scheduled (an
    interrupt among them asks again; a resume command answers it). Pending writes belong
    to their checkpoint (task ids derive from its id) and are not copied. The thread's
    values, interrupts and status follow, through the state manager (so the change is in
    the thread's history). Refused while the thread runs. Returns the new checkpoint's
    config.
    """
    saver = saver or DjangoSaver()
    thread = _thread(thread)
    thread_id = str(thread.pk)
    with transaction.atomic(using=saver.using):
        target = saver.get_tuple(_config(thread_id, checkpoint_id))
        if target is None:
            raise CheckpointNotFound(thread.pk, checkpoint_id)
        current = state.entity_model("thread")._base_manager.using(saver.using)
        current = current.select_for_update().get(pk=thread.pk)
        if current.status == ThreadStatus.BUSY:
            raise state.InvalidState(f"thread {thread.pk} is running; restore it once it stops")
        checkpoint = copy_checkpoint(target.checkpoint)
        checkpoint["id"] = str(uuid6(clock_seq=target.metadata.get("step", -1)))
        checkpoint["ts"] = now().isoformat()
        metadata = {key: value for key, value in target.metadata.items() if key != "run_id"}
        metadata.update(source="fork", restored_from=checkpoint_id)
        # A child of the chosen checkpoint, as LangGraph's own forks are. No new versions:
        # the copy uses the blobs the chosen checkpoint uses.
        config = saver.put(target.config, checkpoint, metadata, {})
        state.update_state(
            "thread",
            thread.pk,
            _thread_state(target),
            expected_version=expected_version,
            actor=actor,
            using=saver.using,
        )
    return config


def fork(thread, checkpoint_id: str, *, actor: Any = None, saver: DjangoSaver | None = None):
    """A new thread in the same session whose history ends at a checkpoint.

    The new thread gets the source thread's checkpoints up to that one (all namespaces),
    with their writes and blobs, so its latest checkpoint is the chosen one; answers given
    to its interrupts since are taken back, so that it waits for a human again. Its
    values, interrupts and status are that checkpoint's. Returns the new thread.
    """
    saver = saver or DjangoSaver()
    source = _thread(thread)
    source_id = str(source.pk)
    with transaction.atomic(using=saver.using):
        target = saver.get_tuple(_config(source_id, checkpoint_id))
        if target is None:
            raise CheckpointNotFound(source.pk, checkpoint_id)
        metadata = dict(source.metadata or {})
        metadata["forked_from"] = {"thread_id": source_id, "checkpoint_id": checkpoint_id}
        initial = {
            "session_id": source.session_id,
            "workflow_id": source.workflow_id,
            "config": source.config or {},
            "metadata": metadata,
            **_thread_state(target),
        }
        forked = state.create_state("thread", initial, actor=actor, using=saver.using)
        saver.copy_history(source_id, str(forked.pk), until=checkpoint_id)
        saver.discard_resumes(str(forked.pk), "", checkpoint_id)
    return forked


# --- retention ----------------------------------------------------------------------


@dataclass
class PruneReport:
    """What a retention pass deleted (or would delete, dry run)."""

    dry_run: bool
    keep_last: int
    max_age_days: int
    namespaces_seen: int = 0
    checkpoints: int = 0
    skipped_threads: list[str] = field(default_factory=list)  # DeltaChannel threads


def prune_checkpoints(
    *,
    keep_last: int | None = None,
    max_age_days: int | None = None,
    batch_size: int = 500,
    dry_run: bool = False,
    saver: DjangoSaver | None = None,
    on_thread: Callable[[str, list[tuple[str, str]]], None] | None = None,
) -> PruneReport:
    """Apply the retention settings to every thread, ``batch_size`` namespaces at a time.

    Keeps the newest ``keep_last`` checkpoints of each (thread, namespace) and deletes
    those older than ``max_age_days`` (0: no limit; None: the STATEHOUSE_CHECKPOINT_*
    settings); never a namespace's latest checkpoint. Each thread is pruned in its own
    transaction, with the writes of the deleted checkpoints and the blobs no kept
    checkpoint uses. ``on_thread(thread_id, [(namespace, checkpoint_id), ...])`` hears of
    each thread with something to delete.
    """
    saver = saver or DjangoSaver()
    if keep_last is None:
        keep_last = settings.STATEHOUSE_CHECKPOINT_KEEP_LAST
    if max_age_days is None:
        max_age_days = settings.STATEHOUSE_CHECKPOINT_MAX_AGE_DAYS
    if keep_last < 0 or max_age_days < 0:
        raise ValueError("keep_last and max_age_days must be 0 (no limit) or more")
    report = PruneReport(dry_run=dry_run, keep_last=keep_last, max_age_days=max_age_days)
    if not keep_last and not max_age_days:
        return report
    cutoff = now() - datetime.timedelta(days=max_age_days) if max_age_days else None
    for batch in _candidate_threads(saver.using, keep_last, cutoff, batch_size):
        report.namespaces_seen += len(batch)
        threads = sorted({thread_id for thread_id, _ in batch})
        delta = set(saver.delta_threads(threads))
        for thread_id in threads:
            if thread_id in delta:
                report.skipped_threads.append(thread_id)
                continue
            deleted = saver.prune_thread(
                thread_id, keep_last=keep_last, older_than=cutoff, dry_run=dry_run
            )
            if deleted:
                report.checkpoints += len(deleted)
                if on_thread is not None:
                    on_thread(thread_id, deleted)
    return report


def _candidate_threads(
    using: str, keep_last: int, cutoff: datetime.datetime | None, batch_size: int
) -> Iterator[list[tuple[str, str]]]:
    """(thread_id, namespace) pairs that may have checkpoints to delete, in batches,
    walking the (thread_id, checkpoint_ns, checkpoint_id) index in order."""
    after: tuple[str, str] | None = None
    while True:
        groups = Checkpoint.objects.using(using).order_by("thread_id", "checkpoint_ns")
        if not keep_last:
            # Age alone: only namespaces with old checkpoints (the created_at index).
            groups = groups.filter(created_at__lt=cutoff)
        if after is not None:
            groups = groups.filter(thread_id__gte=after[0]).exclude(
                thread_id=after[0], checkpoint_ns__lte=after[1]
            )
        rows = list(
            groups.values("thread_id", "checkpoint_ns")
            .annotate(count=Count("id"), oldest=Min("created_at"))
            .values_list("thread_id", "checkpoint_ns", "count", "oldest")[:batch_size]
        )
        if not rows:
            return
        after = rows[-1][0], rows[-1][1]
        wanted = [
            (thread_id, ns)
            for thread_id, ns, count, oldest in rows
            if (keep_last and count > keep_last)
            or (cutoff is not None and oldest < cutoff and (count > 1 or not keep_last))
        ]
        if wanted:
            yield wanted
        if len(rows) < batch_size:
            return
