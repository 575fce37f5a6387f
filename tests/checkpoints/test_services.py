"""Restore and fork through the service functions, and the restore-point handler."""

import pytest
from langgraph.types import Command

from checkpoints_app import services
from checkpoints_app.models import Checkpoint, RestorePoint
from core import state
from history_app.models import StateEvent
from tests.checkpoints import graphs
from tests.factories import make_session, make_thread


@pytest.fixture
def thread(threaded_saver, alice):
    return make_thread(make_session(alice))


def chat(saver, thread, turns=2):
    app = graphs.chat_graph().compile(checkpointer=saver)
    config = {"configurable": {"thread_id": str(thread.pk)}}
    for i in range(turns):
        app.invoke(graphs.human(f"q{i}"), config)
    return app, config


def turn_end(app, config, turn):
    """The checkpoint that ends turn ``turn`` (1-based)."""
    return next(
        s
        for s in app.get_state_history(config)
        if s.metadata["step"] == 4 * turn - 1 and not s.next
    )


def test_restore_makes_an_old_checkpoint_the_head_and_the_thread_history_shows_it(
    threaded_saver, thread, staff
):
    app, config = chat(threaded_saver, thread)
    head = app.get_state(config)
    first = turn_end(app, config, 1)
    version = state.get_state("thread", thread.pk)["version"]

    restored = services.restore(thread, first.config["configurable"]["checkpoint_id"], actor=staff)

    now = app.get_state(config)
    assert now.config == restored
    assert now.values == first.values
    assert now.metadata["source"] == "fork"
    assert now.metadata["restored_from"] == first.config["configurable"]["checkpoint_id"]
    assert "run_id" not in now.metadata
    assert now.parent_config == first.config
    assert [s.config for s in app.get_state_history(config)][1] == head.config
    fresh = state.get_state("thread", thread.pk)
    assert fresh["values"]["messages"][-1]["content"] == "answer 1"
    assert fresh["values"]["turns"] == 1
    assert fresh["status"] == "idle"
    assert fresh["version"] == version + 1
    event = StateEvent.objects.filter(entity_id=thread.pk).latest("id")
    assert event.actor == "user:staff"
    assert "values" in event.changed_fields

    continued = graphs.plain(app.invoke(graphs.human("q-after"), config))
    assert continued["messages"][-1] == ("ai", "answer 2")
    assert continued["messages"][:3] == graphs.plain(first.values["messages"])


def test_restoring_an_interrupted_checkpoint_brings_its_interrupt_back(threaded_saver, thread):
    app = graphs.approval_graph().compile(checkpointer=threaded_saver)
    config = {"configurable": {"thread_id": str(thread.pk)}}
    app.invoke(graphs.human("refund"), config)
    paused = app.get_state(config)
    app.invoke(Command(resume="yes"), config)

    services.restore(thread, paused.config["configurable"]["checkpoint_id"])

    again = app.get_state(config)
    assert again.next == ("review",)
    assert again.parent_config == paused.config
    fresh = state.get_state("thread", thread.pk)
    assert fresh["status"] == "interrupted"
    assert fresh["interrupts"][0]["value"]["question"] == "approve the refund?"
    done = app.invoke(Command(resume="no"), config)
    assert done["notes"] == ["reviewed: no"]


def test_a_running_thread_is_not_restored(threaded_saver, thread):
    app, config = chat(threaded_saver, thread, turns=1)
    checkpoint_id = turn_end(app, config, 1).config["configurable"]["checkpoint_id"]
    state.update_state("thread", thread.pk, {"status": "busy"})
    before = Checkpoint.objects.count()

    with pytest.raises(state.InvalidState, match="running"):
        services.restore(thread, checkpoint_id)

    assert Checkpoint.objects.count() == before


def test_an_unknown_checkpoint_is_not_found_and_nothing_changes(threaded_saver, thread):
    chat(threaded_saver, thread, turns=1)
    version = state.get_state("thread", thread.pk)["version"]

    with pytest.raises(services.CheckpointNotFound):
        services.restore(thread, "1f0000000-no-such-checkpoint")
    with pytest.raises(services.CheckpointNotFound):
        services.fork(thread.pk, "1f0000000-no-such-checkpoint")

    assert state.get_state("thread", thread.pk)["version"] == version
    assert state.entity_model("thread").objects.count() == 1


def test_a_stale_expected_version_refuses_the_restore(threaded_saver, thread):
    app, config = chat(threaded_saver, thread, turns=1)
    checkpoint_id = turn_end(app, config, 1).config["configurable"]["checkpoint_id"]
    before = Checkpoint.objects.count()

    with pytest.raises(state.StateConflict):
        services.restore(thread, checkpoint_id, expected_version=thread.version - 1)

    assert Checkpoint.objects.count() == before


def test_fork_makes_a_thread_in_the_same_session_whose_history_ends_at_the_checkpoint(
    threaded_saver, thread, staff
):
    app, config = chat(threaded_saver, thread, turns=3)
    first = turn_end(app, config, 1)
    first_id = first.config["configurable"]["checkpoint_id"]
    source_count = Checkpoint.objects.filter(thread_id=str(thread.pk)).count()

    forked = services.fork(thread, first_id, actor=staff)

    assert forked.pk != thread.pk
    assert forked.session_id == thread.session_id
    assert forked.metadata["forked_from"] == {
        "thread_id": str(thread.pk),
        "checkpoint_id": first_id,
    }
    assert forked.values["turns"] == 1
    forked_config = {"configurable": {"thread_id": str(forked.pk)}}
    history = list(app.get_state_history(forked_config))
    assert history[0].config["configurable"]["checkpoint_id"] == first_id
    assert history[0].values == first.values
    assert len(history) == 5  # the first turn: input and four steps
    assert Checkpoint.objects.filter(thread_id=str(thread.pk)).count() == source_count
    created = StateEvent.objects.get(entity_id=forked.pk, kind="created")
    assert created.actor == "user:staff"

    continued = graphs.plain(app.invoke(graphs.human("q-fork"), forked_config))
    assert continued["messages"][-1] == ("ai", "answer 2")
    assert graphs.plain(app.get_state(config).values)["turns"] == 3


def test_a_thread_starting_to_run_records_its_latest_checkpoint(threaded_saver, thread):
    state.update_state("thread", thread.pk, {"status": "busy"})
    state.update_state("thread", thread.pk, {"status": "idle"})
    app, config = chat(threaded_saver, thread, turns=1)
    latest = app.get_state(config).config["configurable"]["checkpoint_id"]

    state.update_state("thread", thread.pk, {"status": "busy"})
    state.update_state("thread", thread.pk, {"metadata": {"still": "busy"}})

    points = list(RestorePoint.objects.filter(thread_id=thread.pk).order_by("id"))
    assert [p.checkpoint_id for p in points] == ["", latest]
    assert points[1].checkpoint_ns == ""
    assert points[1].snapshot["status"] == "busy"
    assert points[1].thread_version == state.get_state("thread", thread.pk)["version"] - 1


def test_a_fork_at_an_answered_interrupt_waits_for_a_human_again(threaded_saver, thread):
    app = graphs.approval_graph().compile(checkpointer=threaded_saver)
    config = {"configurable": {"thread_id": str(thread.pk)}}
    app.invoke(graphs.human("refund"), config)
    paused = app.get_state(config)
    app.invoke(Command(resume="yes"), config)

    forked = services.fork(thread, paused.config["configurable"]["checkpoint_id"])

    forked_config = {"configurable": {"thread_id": str(forked.pk)}}
    waiting = app.get_state(forked_config)
    assert waiting.next == ("review",)
    assert [i.value["question"] for i in waiting.interrupts] == ["approve the refund?"]
    assert forked.status == "interrupted"
    assert forked.interrupts[0]["task_id"] == waiting.tasks[0].id
    assert app.invoke(Command(resume="no"), forked_config)["notes"] == ["reviewed: no"]
    assert app.get_state(config).values["notes"] == ["reviewed: yes"]


def test_values_too_large_for_the_thread_stay_in_the_checkpoint(threaded_saver, thread):
    from tests.checkpoints.helpers import config, put

    big = put(threaded_saver, config(str(thread.pk)), {"report": "x" * (300 * 1024)})
    put(threaded_saver, big, {"report": "short"})

    services.restore(thread, big["configurable"]["checkpoint_id"])

    values = state.get_state("thread", thread.pk)["values"]
    assert values["__truncated__"] is True
    head = threaded_saver.get_tuple(config(str(thread.pk)))
    assert len(head.checkpoint["channel_values"]["report"]) == 300 * 1024
