"""A run's steps reach WebSocket subscribers of its feed as they happen."""

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from control_room.routing import websocket_urlpatterns
from tests.factories import make_session
from threads_app import services

pytestmark = pytest.mark.django_db(transaction=True)


def _start(alice):
    thread = services.create_thread(make_session(alice), services.resolve_workflow("pipeline"))
    run = services.create_run(
        thread, input={"steps": 3, "delay_s": 0.05}, stream_mode=["custom"], after_seconds=0.5
    )
    return thread, run


async def test_run_events_stream_to_the_run_feed(alice, celery_worker):
    _thread, run = await database_sync_to_async(_start)(alice)
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/runs/{run.pk}/")
    communicator.scope["user"] = alice
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "subscribed"

    seen = []
    while True:
        message = await communicator.receive_json_from(timeout=30)
        if message.get("type") == "run.event":
            seen.append(message)
            if message["event"] == "end":
                break

    events = [m["event"] for m in seen]
    assert events[0] == "metadata"
    assert [m["data"] for m in seen if m["event"] == "custom"] == [
        {"step": 1, "of": 3},
        {"step": 2, "of": 3},
        {"step": 3, "of": 3},
    ]
    seqs = [m["seq"] for m in seen]
    assert seqs == sorted(seqs)
    await communicator.disconnect()
