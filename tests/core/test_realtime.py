"""Live pushes: after commit only, and a real round trip through the channel layer."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import transaction

from control_room.routing import websocket_urlpatterns
from core import realtime, state
from tests.factories import make_session, make_thread

application = URLRouter(websocket_urlpatterns)


@pytest.mark.django_db(transaction=True)
def test_a_push_waits_for_the_commit(alice, mocker_push):
    session = make_session(alice)
    mocker_push.clear()

    with transaction.atomic():
        state.update_state("session", session.pk, {"title": "Live"})
        assert mocker_push == []  # nothing before the commit

    [(groups, payload)] = mocker_push
    assert groups == [f"session.{session.pk}", "dashboard"]
    assert payload["type"] == "state.changed"
    assert payload["entity"] == "session"
    assert payload["id"] == str(session.pk)
    assert payload["version"] == 2
    assert payload["changed"] == ["title"]
    assert "metadata" not in payload  # compact: never the whole state


@pytest.mark.django_db(transaction=True)
def test_nothing_is_pushed_for_a_rolled_back_change(alice, mocker_push):
    session = make_session(alice)
    mocker_push.clear()

    with pytest.raises(RuntimeError), transaction.atomic():
        state.update_state("session", session.pk, {"title": "Gone"})
        raise RuntimeError("abort")

    assert mocker_push == []


@pytest.mark.django_db(transaction=True)
def test_a_thread_change_reaches_its_session_and_thread_groups(alice, mocker_push):
    session = make_session(alice)
    thread = make_thread(session)
    mocker_push.clear()

    state.update_state("thread", thread.pk, {"status": "busy"})

    thread_pushes = [groups for groups, payload in mocker_push if payload["entity"] == "thread"]
    assert thread_pushes == [[f"thread.{thread.pk}", f"session.{session.pk}", "dashboard"]]
    # The session's aggregate is bookkeeping written in the same transaction: its page
    # hears the thread's change on the session group (and refreshes on it), nothing else.
    assert [payload["entity"] for _, payload in mocker_push] == ["thread"]


async def _connect(path, user):
    communicator = WebsocketCommunicator(application, path)
    if user is not None:
        communicator.scope["user"] = user
    connected, code = await communicator.connect()
    return communicator, connected, code


@pytest.mark.django_db(transaction=True)
async def test_a_committed_change_reaches_a_subscribed_socket(alice):
    session = await database_sync_to_async(make_session)(alice)
    communicator, connected, _ = await _connect(f"/ws/sessions/{session.pk}/", alice)
    assert connected
    assert (await communicator.receive_json_from())["type"] == "subscribed"

    await database_sync_to_async(state.update_state)("session", session.pk, {"title": "Pushed"})

    event = await communicator.receive_json_from(timeout=5)
    assert event["entity"] == "session"
    assert event["id"] == str(session.pk)
    assert event["changed"] == ["title"]
    assert event["version"] == 2
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_rolled_back_change_never_reaches_the_socket(alice):
    session = await database_sync_to_async(make_session)(alice)
    communicator, connected, _ = await _connect(f"/ws/sessions/{session.pk}/", alice)
    assert connected
    await communicator.receive_json_from()

    def change_then_abort():
        with transaction.atomic():
            state.update_state("session", session.pk, {"title": "Gone"})
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        await database_sync_to_async(change_then_abort)()
    await database_sync_to_async(state.update_state)("session", session.pk, {"title": "Kept"})

    event = await communicator.receive_json_from(timeout=5)
    assert event["version"] == 2  # the first event seen is the committed one
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_an_unauthenticated_socket_is_closed(alice):
    session = await database_sync_to_async(make_session)(alice)
    for path in (f"/ws/sessions/{session.pk}/", "/ws/dashboard/"):
        _, connected, code = await _connect(path, None)
        assert not connected
        assert code == 4401


@pytest.mark.django_db(transaction=True)
async def test_a_user_may_subscribe_only_to_what_they_own(alice, bob, staff):
    session = await database_sync_to_async(make_session)(alice)
    thread = await database_sync_to_async(make_thread)(session)

    for path in (f"/ws/sessions/{session.pk}/", f"/ws/threads/{thread.pk}/", "/ws/dashboard/"):
        _, connected, code = await _connect(path, bob)
        assert not connected, path
        assert code == 4403

    for user in (alice, staff):
        communicator, connected, _ = await _connect(f"/ws/threads/{thread.pk}/", user)
        assert connected
        await communicator.disconnect()

    communicator, connected, _ = await _connect("/ws/dashboard/", staff)
    assert connected
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_access_is_checked_again_for_each_event(alice, bob):
    session = await database_sync_to_async(make_session)(alice)
    communicator, connected, _ = await _connect(f"/ws/sessions/{session.pk}/", alice)
    assert connected
    await communicator.receive_json_from()

    # The session is handed to bob: alice's socket must not see its next change.
    await database_sync_to_async(state.update_state)("session", session.pk, {"owner": bob})

    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    assert output["code"] == 4403


def test_flush_waits_for_background_pushes(db):
    realtime.set_server_loop(None)
    realtime.push(["dashboard"], {"type": "state.changed"})
    assert realtime.flush(timeout=5)


class Layer:
    """A channel layer that records its sends and fails for the groups it is told."""

    def __init__(self, failing=()):
        self.sent = []
        self.failing = set(failing)
        self.in_flight = self.most_in_flight = 0

    async def group_send(self, group, message):
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0.01)  # a round trip to Redis
        self.in_flight -= 1
        if group in self.failing:
            raise ConnectionError("Redis is down")
        self.sent.append((group, message["event"]["n"]))


@pytest.fixture
def own_loop():
    """A loop of the test's own for the pushes, so that its sender uses the test's layer."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    realtime.set_server_loop(loop)
    yield
    realtime.set_server_loop(None)

    async def cancel_the_sender():
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run_coroutine_threadsafe(cancel_the_sender(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_a_push_reaches_all_its_groups_at_once_and_in_order(own_loop, monkeypatch):
    layer = Layer()
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: layer)

    for n in range(3):
        realtime.push(["run.1", "thread.1", "dashboard"], {"n": n})
    assert realtime.flush(timeout=5)

    for group in ("run.1", "thread.1", "dashboard"):
        assert [n for name, n in layer.sent if name == group] == [0, 1, 2]
    # Each message goes to its groups together; the next one waits for them.
    assert [n for _, n in layer.sent] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert layer.most_in_flight == 3


def test_a_group_that_fails_drops_the_push_and_the_next_second(own_loop, monkeypatch):
    layer = Layer(failing={"thread.1"})
    monkeypatch.setattr(realtime, "get_channel_layer", lambda: layer)

    realtime.push(["run.1", "thread.1", "dashboard"], {"n": 0})  # never raises
    realtime.push(["run.1"], {"n": 1})  # within a second of the failure: not tried
    assert realtime.flush(timeout=5)

    assert sorted(layer.sent) == [("dashboard", 0), ("run.1", 0)]
