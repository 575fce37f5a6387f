"""Pending writes batched per step (issue 16): ``put_writes`` checks and keeps a task's
writes, the next ``put`` stores them in its own statement, a read of the same saver
stores them first, and ``flush`` stores those no ``put`` followed (a step that failed or
was interrupted). What is stored is what one statement per ``put_writes`` stored."""

import asyncio
import operator
import threading
import time
from typing import Annotated, TypedDict

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test.utils import CaptureQueriesContext
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.serde.types import ERROR, INTERRUPT, RESUME
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from checkpoints_app import models
from checkpoints_app.models import CheckpointWrite
from checkpoints_app.saver import ERROR_SOURCE_NODE, DjangoSaver
from tests.checkpoints.helpers import config, put


def statements(fn):
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


def child(saver, parent):
    """A checkpoint after ``parent`` put without reading first (a read would flush)."""
    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6())
    return saver.put(parent, checkpoint, {"source": "loop", "step": 2}, {})


def stored(thread_id):
    return sorted(
        CheckpointWrite.objects.filter(thread_id=thread_id).values_list(
            "checkpoint_id", "task_id", "idx", "task_path", "channel", "type", "blob"
        )
    )


def plain(rows):
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


# --- what a put carries ---------------------------------------------------------------


def test_put_writes_sends_nothing_and_the_next_put_stores_them_in_its_statement(saver):
    base = put(saver, config(), {"x": 1})
    saver.put_writes(base, [("a", 1), ("b", [2])], "task-1", "~__pregel_pull, a")
    saver.put_writes(base, [(ERROR, "boom")], "task-2")
    assert CheckpointWrite.objects.count() == 0
    assert saver.pending_write_count() == 3

    sent = statements(lambda: child(saver, base))

    if connection.vendor == "postgresql":
        assert sent == 1  # inserts, upsert and checkpoint: one statement
    else:
        assert sent == 3  # writes, the upsert, the checkpoint, in one transaction
    assert saver.pending_write_count() == 0
    # A saver that never saw them reads them back.
    writes = DjangoSaver().get_tuple(base).pending_writes
    assert sorted(writes) == [("task-1", "a", 1), ("task-1", "b", [2]), ("task-2", ERROR, "boom")]


def test_a_read_of_the_same_saver_stores_pending_writes_first(saver):
    base = put(saver, config(), {"x": 1})
    saver.put_writes(base, [("a", 1)], "task")

    assert DjangoSaver().get_tuple(base).pending_writes == []  # not stored yet
    assert saver.get_tuple(base).pending_writes == [("task", "a", 1)]
    assert DjangoSaver().get_tuple(base).pending_writes == [("task", "a", 1)]

    saver.put_writes(base, [("b", 2)], "other")
    (listed,) = [item for item in saver.list(config()) if item.config == base]
    assert sorted(listed.pending_writes) == [("other", "b", 2), ("task", "a", 1)]


def test_deletes_and_copies_see_pending_writes(saver):
    base = put(saver, config("source"), {"x": 1})
    saver.put_writes(base, [("a", 1)], "task")
    saver.copy_thread("source", "copy")
    assert CheckpointWrite.objects.filter(thread_id="copy").count() == 1

    saver.put_writes(base, [("b", 2)], "task-2")
    saver.delete_thread("source")
    saver.flush()
    assert CheckpointWrite.objects.filter(thread_id="source").count() == 0  # none left over


def test_writes_past_one_statements_share_go_in_several(saver):
    base = put(saver, config(), {"x": 1})
    many = [(f"ch{i}", i) for i in range(2500)]
    saver.put_writes(base, many, "task")

    sent = statements(lambda: child(saver, base))

    if connection.vendor == "postgresql":
        assert sent == 3  # 1,000 + 1,000 alone, then 500 with the checkpoint
    assert CheckpointWrite.objects.count() == 2500

    saver.put_writes(base, many, "other")
    flushed = statements(saver.flush)
    if connection.vendor == "postgresql":
        assert flushed == 3
    assert CheckpointWrite.objects.count() == 5000


def test_an_error_handlers_marker_is_stored_at_once(saver):
    base = put(saver, config(), {"x": 1})
    saver.put_writes(base, [("a", 1)], "task")

    sent = statements(lambda: saver.put_writes(base, [(ERROR_SOURCE_NODE, "node")], "task-2"))

    assert sent >= 1
    assert saver.pending_write_count() == 0
    assert CheckpointWrite.objects.filter(channel=ERROR_SOURCE_NODE).count() == 1


# --- the same rows as one statement per put_writes ----------------------------------


CALLS = [
    # (task_id, writes, task_path): against rows stored before (see below)
    ("a", [("out", "new")], ""),  # an insert where a row is: the stored one stays
    ("b", [(ERROR, "new")], ""),  # an upsert: replaces the stored one
    ("c", [(ERROR, "e1"), ("x", 1)], ""),  # mixed: inserts, ERROR at its special index
    ("c", [(ERROR, "e2")], ""),  # then an upsert of the same row: e2
    ("c", [(ERROR, "e3"), ("x", 2)], ""),  # then an insert again: e2 and x=1 stay
    ("d", [(INTERRUPT, "i1")], "p1"),
    ("d", [(INTERRUPT, "i2")], "p2"),  # an upsert keeps the row's first task path
    ("e", [("y", 1), ("y", 2)], ""),  # two indexes of one call
    ("f", [(RESUME, "r1"), (RESUME, "r2")], ""),  # one call's upsert: the last wins
    ("g", [("z", 1)], ""),
    ("g", [(ERROR, "late")], "q"),
    ("g", [("z", 2)], ""),
]


def _run(saver, thread_id, each_stored: bool, by_put: bool):
    base = put(saver, config(thread_id), {"x": 1})
    saver.put_writes(base, [("out", "old")], "a")
    saver.put_writes(base, [(ERROR, "old")], "b")
    saver.flush()  # rows stored before: the calls meet them in the table
    for task_id, writes, path in CALLS:
        saver.put_writes(base, writes, task_id, path)
        if each_stored:
            saver.flush()  # as each put_writes was a statement of its own
    if by_put:
        child(saver, base)
    else:
        saver.flush()
    assert saver.pending_write_count() == 0
    return base


@pytest.mark.parametrize("by_put", [True, False], ids=["stored-by-put", "stored-by-flush"])
def test_batched_writes_store_the_rows_each_statement_stored(saver, by_put):
    _run(saver, "one-by-one", each_stored=True, by_put=False)
    _run(saver, "batched", each_stored=False, by_put=by_put)

    one_by_one = [row[1:] for row in plain(stored("one-by-one"))]
    batched = [row[1:] for row in plain(stored("batched"))]

    assert batched == one_by_one
    values = {
        (task, channel): saver.serde.loads_typed((kind, bytes(blob)))
        for _, task, _, _, channel, kind, blob in stored("batched")
    }
    assert values[("a", "out")] == "old"
    assert values[("b", ERROR)] == "new"
    assert values[("c", ERROR)] == "e2"
    assert values[("c", "x")] == 1
    assert values[("d", INTERRUPT)] == "i2"
    assert values[("f", RESUME)] == "r2"
    paths = {(task, channel): path for _, task, _, path, channel, _, _ in stored("batched")}
    assert paths[("d", INTERRUPT)] == "p1"


# --- bad input, failures ----------------------------------------------------------------


def test_bad_writes_are_refused_at_once_and_none_of_the_call_is_kept(saver):
    base = put(saver, config(), {"x": 1})

    with pytest.raises(ValueError, match="task_id is"):
        saver.put_writes(base, [("a", 1)], "t" * (models.TASK_ID_MAX + 1))
    with pytest.raises(ValueError, match="NUL character"):
        saver.put_writes(base, [("good", 1), ("bad\x00channel", 2)], "task")
    with pytest.raises(ValueError, match="checkpoint_id is required"):
        saver.put_writes(config(), [("a", 1)], "task")

    assert saver.pending_write_count() == 0


def test_a_failed_put_keeps_its_writes_for_the_next_one(saver):
    base = put(saver, config(), {"x": 1})
    saver.put_writes(base, [("a", 1)], "task")

    with transaction.atomic():
        transaction.set_rollback(True)  # the transaction is broken: the put fails
        with pytest.raises(DatabaseError):
            child(saver, base)

    assert saver.pending_write_count() == 1
    saver.put_writes(base, [("a", 2), ("b", 3)], "task")  # the first stays at index 0
    saver.flush()
    assert sorted(DjangoSaver().get_tuple(base).pending_writes) == [
        ("task", "a", 1),
        ("task", "b", 3),
    ]


# --- runs that end without a checkpoint after their writes ----------------------------


class Fan(TypedDict, total=False):
    done: Annotated[list[str], operator.add]


def fan_graph(saver, calls, wait_for_ok):
    """START -> ok and bad in parallel; bad fails on its first call, once ok's writes are
    kept by the saver (so that ok finished)."""

    def ok(state: Fan):
        calls["ok"] += 1
        return {"done": ["ok"]}

    def bad(state: Fan):
        calls["bad"] += 1
        if calls["bad"] == 1:
            wait_for_ok()
            raise RuntimeError("branch failed")
        return {"done": ["bad"]}

    graph = StateGraph(Fan)
    graph.add_node("ok", ok)
    graph.add_node("bad", bad)
    graph.add_edge(START, "ok")
    graph.add_edge(START, "bad")
    graph.add_edge("ok", END)
    graph.add_edge("bad", END)
    return graph.compile(checkpointer=saver)


def test_a_failed_branchs_sibling_writes_are_stored_by_flush(threaded_saver):
    calls = {"ok": 0, "bad": 0}

    def wait_for_ok():
        deadline = time.monotonic() + 30
        while threaded_saver.pending_write_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)

    graph = fan_graph(threaded_saver, calls, wait_for_ok)
    cfg = {"configurable": {"thread_id": "fan"}}
    with pytest.raises(RuntimeError, match="branch failed"):
        graph.invoke({"done": []}, cfg, durability="sync")
    latest = {"configurable": {"thread_id": "fan", "checkpoint_ns": ""}}
    assert DjangoSaver().get_tuple(latest).pending_writes == []  # kept, not stored

    threaded_saver.flush()

    writes = DjangoSaver().get_tuple(latest).pending_writes
    assert ("done", ["ok"]) in [(channel, value) for _, channel, value in writes]
    assert ERROR in [channel for _, channel, _ in writes]
    # A retry on a new saver (a new worker) does not run ok again.
    again = fan_graph(DjangoSaver(), calls, wait_for_ok)
    result = again.invoke(None, cfg, durability="sync")
    assert sorted(result["done"]) == ["bad", "ok"]
    assert calls == {"ok": 1, "bad": 2}


class Asked(TypedDict, total=False):
    answer: str


def ask_graph(saver):
    def ask(state: Asked):
        return {"answer": interrupt("which one?")}

    graph = StateGraph(Asked)
    graph.add_node("ask", ask)
    graph.add_edge(START, "ask")
    graph.add_edge("ask", END)
    return graph.compile(checkpointer=saver)


def test_an_interrupt_inside_a_node_is_stored_by_flush(threaded_saver):
    cfg = {"configurable": {"thread_id": "asked"}}
    result = ask_graph(threaded_saver).invoke({}, cfg, durability="sync")
    assert "__interrupt__" in result

    assert ask_graph(DjangoSaver()).get_state(cfg).interrupts == ()  # kept, not stored
    threaded_saver.flush()

    state = ask_graph(DjangoSaver()).get_state(cfg)
    assert [item.value for item in state.interrupts] == ["which one?"]


# --- threads ----------------------------------------------------------------------------


def test_writes_from_many_threads_while_puts_and_reads_run(threaded_saver):
    saver = threaded_saver
    base = put(saver, config("busy"), {"x": 1})
    start = threading.Barrier(6)
    failures = []

    def writer(n):
        try:
            start.wait()
            for i in range(25):
                saver.put_writes(base, [("a", i), (ERROR, f"e{i}")], f"task-{n}-{i}")
                saver.put_writes(base, [(ERROR, f"f{i}")], f"task-{n}-{i}")  # replaces e
        except Exception as exc:  # reported below
            failures.append(exc)

    def putter():
        try:
            start.wait()
            parent = base
            for _ in range(10):
                parent = child(saver, parent)
        except Exception as exc:
            failures.append(exc)

    def reader():
        try:
            start.wait()
            for _ in range(10):
                saver.get_tuple(base)
        except Exception as exc:
            failures.append(exc)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    workers += [threading.Thread(target=putter), threading.Thread(target=reader)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    saver.flush()

    assert failures == []
    writes = DjangoSaver().get_tuple(base).pending_writes
    assert len(writes) == 4 * 25 * 2
    errors = {task: value for task, channel, value in writes if channel == ERROR}
    assert errors == {f"task-{n}-{i}": f"f{i}" for n in range(4) for i in range(25)}


def test_async_writes_are_kept_and_read_back(threaded_saver):
    saver = threaded_saver
    base = put(saver, config("async"), {"x": 1})

    async def scenario():
        await saver.aput_writes(base, [("a", 1)], "task")
        kept = saver.pending_write_count()
        found = (await saver.aget_tuple(base)).pending_writes
        await saver.aput_writes(base, [("b", 2)], "task-2")
        await saver.aflush()
        return kept, found

    kept, found = asyncio.run(scenario())

    assert kept == 1
    assert found == [("task", "a", 1)]
    assert saver.pending_write_count() == 0
    assert len(DjangoSaver().get_tuple(base).pending_writes) == 2
