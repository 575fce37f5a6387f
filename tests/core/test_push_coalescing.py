"""Live pushes coalesced: one push per entity per transaction, after commit, carrying the
entity's latest state; nothing for what a transaction or a savepoint rolled back."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import connection, transaction

from core import realtime, state
from core.handlers import Pushes
from tests.factories import make_session, make_thread

pytestmark = pytest.mark.django_db(transaction=True)


class Abort(Exception):
    pass


@pytest.fixture
def place(alice):
    session = make_session(alice)
    thread = make_thread(session)
    run = state.create_state("run", {"thread": thread})
    for entity in (session, thread, run):
        entity.refresh_from_db()
    return session, thread, run


@pytest.fixture
def pushed(place, mocker_push):
    mocker_push.clear()  # what creating them pushed
    return mocker_push


def entities(pushed):
    return [(payload["entity"], payload["id"]) for _, payload in pushed]


def test_two_updates_of_a_thread_in_one_transaction_are_one_push_of_the_second(place, pushed):
    session, thread, _ = place

    with transaction.atomic():
        state.update_state("thread", thread.pk, {"status": "busy"})
        state.update_state("thread", thread.pk, {"metadata": {"topic": "billing"}})
        assert pushed == []

    [(groups, payload)] = pushed
    assert groups == [f"thread.{thread.pk}", f"session.{session.pk}", "dashboard"]
    assert payload["entity"] == "thread"
    assert payload["kind"] == "updated"
    assert payload["version"] == thread.version + 2
    assert payload["status"] == "busy"  # the latest state
    assert payload["changed"] == ["status", "metadata"]  # what either change changed


def test_changes_of_a_thread_a_run_and_a_session_are_one_push_each_in_order(place, pushed):
    session, thread, run = place

    with transaction.atomic():
        state.update_state("thread", thread.pk, {"status": "busy"})
        state.update_state("run", run.pk, {"status": "running"})
        state.update_state("session", session.pk, {"title": "Renamed"})
        state.update_state("thread", thread.pk, {"status": "idle"})
        state.update_state("run", run.pk, {"status": "success"})
        pushes = [func for _, func, _ in connection.run_on_commit if isinstance(func, Pushes)]
        assert len(pushes) == 1  # one callback for the transaction

    assert entities(pushed) == [
        ("thread", str(thread.pk)),
        ("run", str(run.pk)),
        ("session", str(session.pk)),
    ]
    thread_push, run_push, session_push = (payload for _, payload in pushed)
    assert (thread_push["status"], thread_push["version"]) == ("idle", thread.version + 2)
    assert (run_push["status"], run_push["version"]) == ("success", run.version + 2)
    assert session_push["changed"] == ["title"]
    assert pushed[1][0] == [f"run.{run.pk}", f"thread.{thread.pk}", "dashboard"]


def test_created_then_updated_is_one_created(alice, mocker_push):
    with transaction.atomic():
        session = make_session(alice)
        state.update_state("session", session.pk, {"title": "Renamed"})

    [(_, payload)] = mocker_push
    assert (payload["kind"], payload["version"]) == ("created", 2)
    assert "title" in payload["changed"]


def test_updated_then_deleted_is_one_deleted_heard_where_it_was_seen(place, pushed, alice):
    session, thread, _ = place
    other = make_session(alice, "Other")
    pushed.clear()

    with transaction.atomic():
        state.update_state("thread", thread.pk, {"session": other})
        state.delete_state("thread", thread.pk)

    [(groups, payload)] = pushed
    assert (payload["kind"], payload["version"]) == ("deleted", thread.version + 1)
    # Its move never committed: its feed and the session it was seen in hear it is gone.
    assert groups == [f"thread.{thread.pk}", f"session.{session.pk}", "dashboard"]
    assert payload["session_id"] == str(session.pk)


def test_nothing_is_pushed_for_a_rolled_back_transaction(place, pushed):
    _, thread, run = place

    with pytest.raises(Abort), transaction.atomic():
        state.update_state("thread", thread.pk, {"status": "busy"})
        state.update_state("run", run.pk, {"status": "running"})
        raise Abort

    assert pushed == []


def test_a_rolled_back_savepoint_pushes_nothing_of_what_it_changed(place, pushed):
    session, thread, run = place

    with transaction.atomic():
        state.update_state("thread", thread.pk, {"status": "busy"})
        with pytest.raises(Abort), transaction.atomic():
            state.update_state("thread", thread.pk, {"metadata": {"topic": "gone"}})
            state.update_state("session", session.pk, {"title": "Gone"})
            raise Abort
        state.update_state("run", run.pk, {"status": "running"})

    assert entities(pushed) == [("thread", str(thread.pk)), ("run", str(run.pk))]
    thread_push = pushed[0][1]
    assert (thread_push["version"], thread_push["changed"]) == (thread.version + 1, ["status"])


def test_a_released_savepoint_is_coalesced_with_its_transaction(place, pushed):
    session, thread, run = place

    with transaction.atomic():
        state.update_state("thread", thread.pk, {"status": "busy"})
        with transaction.atomic():  # a service's own block: released
            state.update_state("run", run.pk, {"status": "running"})
            state.update_state("thread", thread.pk, {"metadata": {"topic": "billing"}})
        state.update_state("session", session.pk, {"title": "Renamed"})
        # The savepoint's callback was merged into the transaction's: it pushes nothing.
        [_callback] = [
            func
            for _, func, _ in connection.run_on_commit
            if isinstance(func, Pushes) and func.changes
        ]

    assert entities(pushed) == [
        ("thread", str(thread.pk)),
        ("run", str(run.pk)),
        ("session", str(session.pk)),
    ]
    assert pushed[0][1]["version"] == thread.version + 2


def test_a_rolled_back_savepoint_drops_the_savepoints_it_released(place, pushed):
    session, thread, run = place

    with transaction.atomic():
        state.update_state("session", session.pk, {"title": "Kept"})
        with pytest.raises(Abort), transaction.atomic():
            with transaction.atomic():
                state.update_state("thread", thread.pk, {"status": "busy"})
            state.update_state("run", run.pk, {"status": "running"})
            raise Abort
        with transaction.atomic():
            state.update_state("thread", thread.pk, {"metadata": {"topic": "billing"}})

    assert entities(pushed) == [("session", str(session.pk)), ("thread", str(thread.pk))]
    thread_push = pushed[1][1]
    assert (thread_push["changed"], thread_push["status"]) == (["metadata"], "idle")


def test_outside_a_transaction_a_change_is_pushed_at_once(place, pushed):
    _, thread, _ = place

    state.update_state("thread", thread.pk, {"status": "busy"})
    assert entities(pushed) == [("thread", str(thread.pk))]
    state.update_state("thread", thread.pk, {"status": "idle"})
    assert [payload["status"] for _, payload in pushed] == ["busy", "idle"]


async def test_a_subscribed_group_hears_a_transaction_once(place):
    _, thread, _ = place
    realtime.flush()  # what creating them pushed is out before the group is joined
    layer = get_channel_layer()
    realtime.set_server_loop(asyncio.get_running_loop())
    channel = await layer.new_channel()
    await layer.group_add(f"thread.{thread.pk}", channel)

    def change_twice():
        with transaction.atomic():
            state.update_state("thread", thread.pk, {"status": "busy"})
            state.update_state("thread", thread.pk, {"status": "idle"})

    try:
        await database_sync_to_async(change_twice)()
        message = await asyncio.wait_for(layer.receive(channel), timeout=5)
        assert message["type"] == "live.event"
        assert (message["event"]["status"], message["event"]["version"]) == (
            "idle",
            thread.version + 2,
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(layer.receive(channel), timeout=0.3)
    finally:
        await layer.group_discard(f"thread.{thread.pk}", channel)
        realtime.set_server_loop(None)
