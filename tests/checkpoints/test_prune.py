"""Retention: manage.py prune_checkpoints (keep the newest N, drop the old, dry run)."""

import datetime
import io

import pytest
from django.core.management import call_command

from checkpoints_app.models import Checkpoint, CheckpointBlob, CheckpointWrite
from core.time import now
from tests.checkpoints.helpers import config, put, thread_of


def prune(*args) -> str:
    out = io.StringIO()
    call_command("prune_checkpoints", *args, stdout=out)
    return out.getvalue()


def ids(thread_id="t-1", ns=""):
    rows = Checkpoint.objects.filter(thread_id=thread_id, checkpoint_ns=ns)
    return list(rows.order_by("-checkpoint_id").values_list("checkpoint_id", flat=True))


def used_blobs(saver, thread_id="t-1"):
    used = set()
    for t in saver.list(config(thread_id)):
        row = Checkpoint.objects.get(thread_id=thread_id, checkpoint_id=t.checkpoint["id"])
        used |= set(row.blob_versions.items())
    return used


def test_a_dry_run_prints_what_it_would_delete_and_deletes_nothing(saver):
    thread_of(saver, 6)
    before = ids()

    out = prune("--keep-last", "2", "--dry-run")

    assert ids() == before
    assert f"thread t-1 namespace '': would delete 4 checkpoint(s): {', '.join(before[2:])}" in out
    assert "Dry run: would delete 4 checkpoint(s) (keep last 2, max age none)." in out


def test_keep_last_keeps_the_newest_checkpoints_with_their_writes_and_blobs(saver):
    latest = thread_of(saver, 6)
    thread_of(saver, 2, "short")
    before = ids()
    kept_writes = saver.get_tuple(latest).pending_writes

    out = prune("--keep-last", "2")

    assert ids() == before[:2]
    assert len(ids("short")) == 2
    assert CheckpointWrite.objects.filter(thread_id="t-1").count() == 2 * 2
    assert set(
        CheckpointBlob.objects.filter(thread_id="t-1").values_list("channel", "version")
    ) == (used_blobs(saver))
    assert saver.get_tuple(latest).pending_writes == kept_writes
    assert "deleted 4 checkpoint(s)" in out


def test_max_age_deletes_old_checkpoints_but_never_a_namespaces_latest(saver):
    thread_of(saver, 5)
    thread_of(saver, 3, "recent")
    old = now() - datetime.timedelta(days=40)
    Checkpoint.objects.filter(thread_id="t-1").update(created_at=old)
    Checkpoint.objects.filter(thread_id="recent").update(
        created_at=now() - datetime.timedelta(days=2)
    )
    newest = ids()[0]

    prune("--max-age-days", "30")

    assert ids() == [newest]
    assert len(ids("recent")) == 3
    assert saver.get_tuple(config()).checkpoint["id"] == newest


def test_each_namespace_keeps_its_latest(saver):
    thread_of(saver, 3)
    sub = config(ns="sub:1")
    for i in range(3):
        sub = put(saver, sub, {"y": [i]})

    prune("--keep-last", "1")

    assert len(ids()) == 1
    assert ids(ns="sub:1") == [sub["configurable"]["checkpoint_id"]]


def test_the_settings_are_the_defaults_and_zero_means_no_limit(saver, settings):
    thread_of(saver, 4)
    settings.STATEHOUSE_CHECKPOINT_KEEP_LAST = 0
    settings.STATEHOUSE_CHECKPOINT_MAX_AGE_DAYS = 0

    assert "No retention limit set" in prune()
    assert len(ids()) == 4

    settings.STATEHOUSE_CHECKPOINT_KEEP_LAST = 3
    prune()

    assert len(ids()) == 3


def test_threads_are_pruned_in_batches(saver):
    for name in ("a", "b", "c"):
        thread_of(saver, 3, name)

    prune("--keep-last", "1", "--batch-size", "1")

    assert sorted(Checkpoint.objects.values_list("thread_id", flat=True)) == ["a", "b", "c"]


def test_threads_with_a_delta_channel_are_skipped(saver):
    cfg = config("delta")
    for i in range(3):
        cfg = put(
            saver,
            cfg,
            {"x": [i]},
            metadata={"source": "loop", "step": i, "counters_since_delta_snapshot": {"x": [i, i]}},
        )

    out = prune("--keep-last", "1")

    assert len(ids("delta")) == 3
    assert "thread delta: skipped (uses a DeltaChannel" in out


def test_bad_arguments_are_refused(saver):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        prune("--keep-last", "-1")


def test_a_subgraph_calls_namespace_goes_with_the_root_checkpoint_it_started_from(
    threaded_saver,
):
    from langgraph.types import Command

    from tests.checkpoints import graphs

    app = graphs.parent_graph().compile(checkpointer=threaded_saver)
    config = {"configurable": {"thread_id": "calls"}}
    app.invoke(graphs.human("a shirt"), config)
    app.invoke(Command(resume="M"), config)  # the first call ends
    app.invoke(graphs.human("a hat"), config)  # the second call waits for an answer
    namespaces = set(
        Checkpoint.objects.filter(thread_id="calls").values_list("checkpoint_ns", flat=True)
    )
    waiting = app.get_state(config, subgraphs=True).tasks[0].state.config
    waiting_ns = waiting["configurable"]["checkpoint_ns"]

    threaded_saver.prune(["calls"], strategy="keep_latest")

    left = set(Checkpoint.objects.filter(thread_id="calls").values_list("checkpoint_ns", flat=True))
    assert len(namespaces) == 3  # the root and two calls
    assert left == {"", waiting_ns}
    done = app.invoke(Command(resume="L"), config)
    assert graphs.plain(done["messages"])[-2:] == [("ai", "ordered, size L"), ("ai", "bye")]
