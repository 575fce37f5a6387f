"""DjangoSaver itself: storage layout, query counts, input checks, filters, deletions."""

import enum
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT

from checkpoints_app.models import Checkpoint, CheckpointBlob, CheckpointWrite
from checkpoints_app.saver import DjangoSaver
from tests.checkpoints.helpers import config, put, thread_of


class Color(enum.StrEnum):
    RED = "red"


def statements(saver, fn):
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


# --- storage ----------------------------------------------------------------------


def test_primitives_stay_inline_and_only_new_versions_of_other_values_become_blobs(saver):
    values = {
        "text": "hello",
        "count": 3,
        "ratio": 0.5,
        "flag": False,
        "nothing": None,
        "messages": [HumanMessage(content="hi")],
        "nul": "a\x00b",
        "color": Color.RED,
        "huge": 1e300,
        "negative_zero": -0.0,
    }
    stored = put(saver, config(), values)

    row = Checkpoint.objects.get(checkpoint_id=stored["configurable"]["checkpoint_id"])
    assert row.checkpoint["channel_values"] == {
        "text": "hello",
        "count": 3,
        "ratio": 0.5,
        "flag": False,
        "nothing": None,
    }
    blobs = set(CheckpointBlob.objects.values_list("channel", flat=True))
    assert blobs == {"messages", "nul", "color", "huge", "negative_zero"}
    loaded = saver.get_tuple(stored).checkpoint["channel_values"]
    assert loaded == values
    assert type(loaded["color"]) is Color
    assert type(loaded["huge"]) is float

    second = put(saver, stored, {**values, "text": "again"}, new=["text"])

    assert CheckpointBlob.objects.count() == 5  # nothing new: unchanged blobs are reused
    assert saver.get_tuple(second).checkpoint["channel_values"] == {**values, "text": "again"}


def test_a_channel_left_out_of_the_versions_is_not_loaded(saver):
    first = put(saver, config(), {"a": [1], "b": [2]})
    second = put(saver, first, {"a": [3]}, versions={"a": "5"})

    assert saver.get_tuple(second).checkpoint["channel_values"] == {"a": [3]}


def test_pending_writes_come_back_in_langgraphs_order(saver):
    stored = put(saver, config(), {"x": 1})
    saver.put_writes(stored, [("b", 2), ("a", 1)], "task-z", task_path="~__pregel_pull, b")
    saver.put_writes(stored, [("c", 3)], "task-y", task_path="~__pregel_pull, a")
    saver.put_writes(stored, [(INTERRUPT, "stop"), ("late", 0)], "task-x", task_path="")

    writes = saver.get_tuple(stored).pending_writes

    assert writes == [
        ("task-x", INTERRUPT, "stop"),
        ("task-x", "late", 0),
        ("task-y", "c", 3),
        ("task-z", "b", 2),
        ("task-z", "a", 1),
    ]


def test_special_writes_are_replaced_and_regular_ones_kept(saver):
    stored = put(saver, config(), {"x": 1})
    saver.put_writes(stored, [(ERROR, "first")], "task")
    saver.put_writes(stored, [(ERROR, "second")], "task")
    saver.put_writes(stored, [("out", "first")], "task")
    saver.put_writes(stored, [("out", "second")], "task")

    assert sorted(saver.get_tuple(stored).pending_writes) == [
        ("task", ERROR, "second"),
        ("task", "out", "first"),
    ]


def test_versions_increase_and_differ_between_branches(saver):
    first = saver.get_next_version(None, None)
    second = saver.get_next_version(first, None)

    assert first < second
    assert second.split(".")[0] == f"{2:032}"
    assert saver.get_next_version(first, None) != second
    assert saver.get_next_version(7, None).startswith(f"{8:032}.")


# --- query counts -------------------------------------------------------------------


def test_get_tuple_is_one_statement_whatever_the_size_of_the_thread(saver):
    small = thread_of(saver, 3, "small")
    large = thread_of(saver, 40, "large")
    saver.flush()  # the last writes: a read stores them first

    for cfg in (small, large, config("large"), config("missing")):
        assert statements(saver, lambda cfg=cfg: saver.get_tuple(cfg)) == 1


def test_list_is_one_statement_whatever_the_limit_and_the_size_of_the_thread(saver):
    thread_of(saver, 40)
    saver.flush()

    counts = {
        limit: statements(saver, lambda limit=limit: list(saver.list(config(), limit=limit)))
        for limit in (1, 10, 40, None)
    }
    filtered = statements(
        saver, lambda: list(saver.list(config(), filter={"source": "loop"}, limit=25))
    )

    assert counts == {1: 1, 10: 1, 40: 1, None: 1}
    assert filtered == 1
    assert len(list(saver.list(config(), limit=25))) == 25


def test_put_is_one_bulk_statement_per_table_whatever_the_number_of_channels(saver):
    few = {f"c{i}": [i] for i in range(2)}
    many = {f"c{i}": [i] for i in range(30)}
    expected = 1 if connection.vendor == "postgresql" else 2  # SQLite: blobs, checkpoint

    assert statements(saver, lambda: put(saver, config("few"), few)) == expected
    assert statements(saver, lambda: put(saver, config("many"), many)) == expected
    assert statements(saver, lambda: put(saver, config("inline"), {"n": 1})) == 1
    assert CheckpointBlob.objects.filter(thread_id="many").count() == 30


def test_put_writes_sends_nothing_and_a_flush_is_one_statement_whatever_the_writes(saver):
    stored = put(saver, config(), {"x": 1})

    writes = [(f"ch{i}", [i]) for i in range(25)]
    special = [(ERROR, "boom")]

    assert statements(saver, lambda: saver.put_writes(stored, writes, "task")) == 0
    assert statements(saver, lambda: saver.put_writes(stored, special, "other")) == 0
    assert CheckpointWrite.objects.count() == 0
    # PostgreSQL: the inserts and the upsert in one statement; SQLite: one each.
    expected = 1 if connection.vendor == "postgresql" else 2
    assert statements(saver, saver.flush) == expected
    assert CheckpointWrite.objects.count() == 26
    assert statements(saver, saver.flush) == 0  # nothing left to store


def test_a_postgres_put_needs_no_transaction_of_its_own(on_postgres, saver):
    with CaptureQueriesContext(connection) as captured:
        put(saver, config(), {"a": [1], "b": [2]})

    (statement,) = [q["sql"] for q in captured.captured_queries]
    assert statement.lstrip().upper().startswith("WITH NEW_BLOBS AS (INSERT")


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thread_id", "message"),
    [("x" * 256, "256 characters long"), ("bad\x00id", "NUL character")],
)
def test_a_bad_thread_id_is_refused_with_a_clear_error(saver, thread_id, message):
    good = put(saver, config(), {"x": 1})
    calls = [
        lambda: put(saver, config(thread_id), {"x": 1}),
        lambda: saver.get_tuple(config(thread_id)),
        lambda: list(saver.list(config(thread_id))),
        lambda: saver.put_writes(config(thread_id, checkpoint_id="c"), [("a", 1)], "t"),
        lambda: saver.delete_thread(thread_id),
        lambda: saver.copy_thread(good["configurable"]["thread_id"], thread_id),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=message):
            call()
    assert Checkpoint.objects.count() == 1


def test_the_longest_thread_id_the_column_holds_is_accepted(saver):
    thread_id = "é" * 255

    stored = put(saver, config(thread_id), {"x": [1]})

    assert saver.get_tuple(config(thread_id)).config == stored


def test_metadata_with_nul_characters_is_stored_without_them(saver):
    stored = put(
        saver,
        config(),
        {"x": 1},
        metadata={"source": "loop", "step": 1, "note": "a\x00b", "nested": {"k\x00": ["\x00z"]}},
    )

    metadata = saver.get_tuple(stored).metadata
    assert metadata["note"] == "ab"
    assert metadata["nested"] == {"k": ["z"]}


def test_metadata_that_is_not_json_is_refused_with_a_clear_error(saver):
    with pytest.raises(ValueError, match="metadata cannot be stored as JSON"):
        put(saver, config(), {"x": 1}, metadata={"source": "loop", "thing": object()})


# --- listing ------------------------------------------------------------------------


def test_metadata_filters_match_by_json_containment(saver):
    def tagged(thread_id, metadata):
        return put(saver, config(thread_id), {"x": 1}, metadata=metadata)

    tagged("a", {"source": "loop", "step": 1, "flag": True, "tags": ["x", "y"], "who": {"id": 1}})
    tagged("b", {"source": "loop", "step": 1, "flag": 1, "tags": ["y"], "who": {"id": 2}})
    tagged("c", {"source": "input", "step": 1.0, "flag": None, "who": {"id": 1, "n": "c"}})

    def threads(filter, **kwargs):
        return sorted(
            t.config["configurable"]["thread_id"] for t in saver.list(None, filter=filter, **kwargs)
        )

    assert threads({"flag": True}) == ["a"]
    assert threads({"flag": 1}) == ["b"]
    assert threads({"flag": None}) == ["c"]
    assert threads({"step": 1}) == ["a", "b", "c"]
    assert threads({"tags": ["y"]}) == ["a", "b"]
    assert threads({"tags": ["x"], "source": "loop"}) == ["a"]
    assert threads({"who": {"id": 1}}) == ["a", "c"]
    assert threads({"who": {"id": 1}}, limit=1) == ["c"]
    assert threads({"missing": "key"}) == []


def test_list_without_a_thread_orders_all_checkpoints_newest_first(saver):
    ids = [put(saver, config(f"t{i}"), {"x": i})["configurable"]["checkpoint_id"] for i in range(4)]

    listed = [t.checkpoint["id"] for t in saver.list(None)]
    before = [
        t.checkpoint["id"] for t in saver.list(None, before=config("t0", checkpoint_id=ids[2]))
    ]

    assert listed == ids[::-1]
    assert before == ids[1::-1]


def test_a_metadata_filter_is_a_containment_query_the_gin_index_serves(on_postgres, saver):
    put(saver, config(), {"x": 1}, metadata={"source": "loop", "step": 1})
    with CaptureQueriesContext(connection) as captured:
        found = list(saver.list(None, filter={"source": "loop"}))
    statement = captured.captured_queries[0]["sql"]

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # as on a table too big to scan
        cursor.execute("EXPLAIN " + statement)
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert len(found) == 1
    assert "metadata @>" in statement
    assert "checkpoint_metadata_gin" in plan


# --- deleting, copying, pruning ---------------------------------------------------------


def test_delete_for_runs_drops_their_checkpoints_writes_and_only_blobs_nobody_uses(saver):
    cfg = thread_of(saver, 10)  # run-0: checkpoints 0-4, run-1: 5-9
    used_later = {
        v for t in saver.list(config(), filter={"run_id": "run-1"}) for v in _blob_keys(t)
    }

    saver.delete_for_runs(["run-0"])

    remaining = list(saver.list(config()))
    assert {t.metadata["run_id"] for t in remaining} == {"run-1"}
    assert len(remaining) == 5
    assert CheckpointWrite.objects.count() == 5 * 2
    assert set(CheckpointBlob.objects.values_list("channel", "version")) == used_later
    assert saver.get_tuple(cfg).checkpoint["channel_values"]["notes"] == [8]
    assert remaining[-1].parent_config is None


def test_prune_keeps_each_namespaces_latest_checkpoint_with_its_writes_and_blobs(saver):
    latest = thread_of(saver, 6)
    sub = put(saver, config(ns="sub:1"), {"y": [1]})
    sub = put(saver, sub, {"y": [2]})
    kept = saver.get_tuple(latest)

    saver.prune(["t-1"], strategy="keep_latest")

    assert [t.checkpoint["id"] for t in saver.list(config())] == [kept.checkpoint["id"]]
    assert [t.config for t in saver.list(config(ns="sub:1"))] == [sub]
    after = saver.get_tuple(latest)
    assert after.checkpoint["channel_values"] == kept.checkpoint["channel_values"]
    assert after.pending_writes == kept.pending_writes
    assert after.parent_config is None
    assert CheckpointBlob.objects.count() == 3  # messages + notes of the root, y of sub


def test_prune_refuses_threads_with_a_delta_channel(saver):
    put(saver, config(), {"x": [1]}, metadata={"source": "loop", "step": 0})
    put(
        saver,
        config("delta"),
        {"x": [1]},
        metadata={"source": "loop", "step": 0, "counters_since_delta_snapshot": {"x": [1, 1]}},
    )

    with pytest.raises(NotImplementedError, match="delta"):
        saver.prune(["t-1", "delta"])

    assert Checkpoint.objects.count() == 2


def test_prune_with_delete_removes_the_threads(saver):
    thread_of(saver, 3)
    thread_of(saver, 2, "other")

    saver.prune(["t-1"], strategy="delete")

    assert set(Checkpoint.objects.values_list("thread_id", flat=True)) == {"other"}
    assert set(CheckpointBlob.objects.values_list("thread_id", flat=True)) == {"other"}
    assert set(CheckpointWrite.objects.values_list("thread_id", flat=True)) == {"other"}


def test_copy_history_until_a_checkpoint_copies_what_it_needs(saver):
    thread_of(saver, 6)
    third = list(saver.list(config()))[::-1][2]

    copied = saver.copy_history("t-1", "copy", until=third.checkpoint["id"])

    assert copied == 3
    head = saver.get_tuple(config("copy"))
    assert head.checkpoint == third.checkpoint
    assert head.pending_writes == third.pending_writes
    blobs_needed = {k for t in saver.list(config("copy")) for k in _blob_keys(t)}
    assert (
        set(CheckpointBlob.objects.filter(thread_id="copy").values_list("channel", "version"))
        == blobs_needed
    )


def _blob_keys(checkpoint_tuple):
    return {
        (channel, checkpoint_tuple.checkpoint["channel_versions"][channel])
        for channel in ("messages", "notes")
        if channel in checkpoint_tuple.checkpoint["channel_values"]
    }


def test_a_uuid_thread_id_is_stored_as_its_string(saver):
    thread_id = uuid.uuid4()

    stored = put(saver, config(thread_id), {"x": 1})

    assert stored["configurable"]["thread_id"] == str(thread_id)
    assert saver.get_tuple(config(str(thread_id))) is not None
    assert DjangoSaver(using="default").using == "default"
