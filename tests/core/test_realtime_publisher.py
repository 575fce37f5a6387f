"""The Redis publisher of live pushes (core/realtime.py) against channels_redis's own
pub/sub layer, on a real Redis server: what it publishes is what the layer's members
receive, in order, once per group."""

import asyncio
import os
import uuid

import pytest
from channels.layers import get_channel_layer

from core import realtime

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def pubsub_layer(settings, monkeypatch):
    """The production channel layer, on a prefix of the test's own."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
        }
    }
    monkeypatch.setattr(realtime, "_publisher", None)
    layer = get_channel_layer()
    yield layer


async def _member(layer, *groups):
    channel = await layer.new_channel()
    for group in groups:
        await layer.group_add(group, channel)
    return channel


async def test_pushes_go_through_the_publisher_and_reach_the_groups_members(pubsub_layer):
    assert isinstance(realtime._sender(), realtime._Publisher)
    layer = pubsub_layer
    run_member = await _member(layer, "run.r1")
    thread_member = await _member(layer, "thread.t1")
    both = await _member(layer, "run.r1", "thread.t1")
    try:
        realtime.push(["run.r1", "thread.t1"], {"type": "run.event", "seq": 1})
        assert await asyncio.to_thread(realtime.flush, 5)

        expected = {"type": "live.event", "event": {"type": "run.event", "seq": 1}}
        for channel in (run_member, thread_member):
            assert await asyncio.wait_for(layer.receive(channel), 5) == expected
        # A member of both groups hears the push once per group, as with group_send.
        assert await asyncio.wait_for(layer.receive(both), 5) == expected
        assert await asyncio.wait_for(layer.receive(both), 5) == expected
    finally:
        await layer.flush()


async def test_pushes_queued_together_arrive_in_order(pubsub_layer):
    layer = pubsub_layer
    channel = await _member(layer, "thread.t2")
    try:
        for seq in range(200):
            realtime.push(["thread.t2"], {"type": "run.event", "seq": seq})
        assert await asyncio.to_thread(realtime.flush, 5)

        received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(200)]
        assert [message["event"]["seq"] for message in received] == list(range(200))
    finally:
        await layer.flush()


def test_other_layers_keep_their_own_send(settings, monkeypatch):
    """The in-memory layer (embedded mode) is sent to by its own group_send."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(realtime, "_publisher", None)
    assert isinstance(realtime._sender(), realtime._Sender)


def test_a_forked_process_starts_a_publisher_of_its_own(pubsub_layer, monkeypatch):
    first = realtime._sender()
    assert realtime._sender() is first
    monkeypatch.setattr(realtime.os, "getpid", lambda: first.pid + 1)
    assert realtime._sender() is not first
