"""The configured channel layer, on the real Redis (production mode)."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings


@pytest.fixture
def redis_layer():
    if "channels_redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("needs REDIS_URL (production mode)")
    return get_channel_layer()


async def test_a_receive_outlasts_the_redis_clients_default_socket_timeout(redis_layer):
    """An idle stream or WebSocket waits longer than redis-py's 5 s default read timeout
    (channels_redis blocks 5 s per BZPOPMIN); the wait must not fail with a TimeoutError."""
    channel = await redis_layer.new_channel()

    async def send_later():
        await asyncio.sleep(7)
        await redis_layer.send(channel, {"type": "late.message"})

    sender = asyncio.ensure_future(send_later())
    try:
        message = await asyncio.wait_for(redis_layer.receive(channel), 20)
    finally:
        sender.cancel()

    assert message == {"type": "late.message"}
