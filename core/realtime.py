"""Live pushes to Channels groups.

``push()`` never blocks the caller and never raises: a push is a side effect that may be
lost (a page reconnecting re-reads the state; with Redis down pushes are dropped). Pushes
are queued and sent in order, by one sender per process:

* with Redis (channels_redis's pub/sub layer, production), a thread of its own that sends
  everything queued since its last send as one pipeline of PUBLISH commands on one plain
  Redis connection: a group's send is one PUBLISH, and a worker's pushes of a step cost
  one round trip. (Sent by the layer's own async ``group_send`` from an event loop in a
  thread, a push to two groups cost a worker 0.33 ms of CPU, 8 ms per 1-step run:
  ``bench/api.py``'s "CPU per 1-step run".) The message is serialized by the layer and
  published on the channel the layer subscribes a group's members to
  (tests/core/test_realtime_publisher.py checks both against the layer);
* otherwise one task on an event loop: the ASGI server's loop when one is registered
  (embedded mode: the in-memory channel layer only delivers to consumers on that loop, so
  worker threads hand their pushes over to it instead of calling ``async_to_sync``), or
  a background thread with its own loop (management commands).
"""

import asyncio
import logging
import os
import queue
import threading
import time
from typing import Any

import redis
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings

from core.outages import OutageLog

logger = logging.getLogger(__name__)
# With the channel layer failing (Redis down), pushes are dropped (logged once a minute):
# the event log in the database is the truth, and pages re-read it when they reconnect.
_outage = OutageLog(logger, "live pushes dropped: the channel layer failed")
RETRY_AFTER_S = 1.0
# A publish that gets no answer from Redis in this long is given up (the pushes dropped).
PUBLISH_TIMEOUT_S = 2.0

_lock = threading.Lock()
_server_loop: asyncio.AbstractEventLoop | None = None
_senders: dict[asyncio.AbstractEventLoop, "_Sender"] = {}
_background_loop: asyncio.AbstractEventLoop | None = None


class _Queued:
    """What a sender has queued and not sent yet (``idle`` once all is sent, for flush),
    and its pause after a failure: with the channel layer failing (Redis down), pushes
    are dropped, and so are those of the next RETRY_AFTER_S without trying."""

    def __init__(self):
        self.idle = threading.Event()
        self.idle.set()
        self.pending = 0
        self.skip_until = 0.0

    def queued(self) -> None:
        with _lock:
            self.pending += 1
            self.idle.clear()

    def may_send(self) -> bool:
        return time.monotonic() >= self.skip_until

    def failed(self, exc: Exception) -> None:
        self.skip_until = time.monotonic() + RETRY_AFTER_S
        _outage.failed(exc)

    def done(self, count: int) -> None:
        with _lock:
            self.pending -= count
            if self.pending == 0:
                self.idle.set()


class _Sender(_Queued):
    """Sends queued pushes one after another on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self.loop = loop
        self.queue: asyncio.Queue | None = None
        loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        self.queue = asyncio.Queue()
        self.loop.create_task(self._run())

    def put(self, groups: list[str], message: dict[str, Any]) -> None:
        self.queued()
        self.loop.call_soon_threadsafe(self._enqueue, groups, message)

    def _enqueue(self, groups, message) -> None:
        if self.queue is None:  # _start has not run yet: it is next on the loop
            self.loop.call_soon(self._enqueue, groups, message)
            return
        self.queue.put_nowait((groups, message))

    async def _run(self) -> None:
        layer = get_channel_layer()
        while True:
            groups, message = await self.queue.get()
            try:
                if layer is not None and self.may_send():
                    await _group_send(layer, groups, message)
                    _outage.recovered()
            except Exception as exc:
                self.failed(exc)
            finally:
                self.done(1)


async def _group_send(layer, groups: list[str], message: dict[str, Any]) -> None:
    """Send ``message`` to its groups concurrently (with Redis, a group's send is a few
    round trips); the next message waits for them, so a group gets its messages in order."""
    if len(groups) == 1:
        await layer.group_send(groups[0], message)
        return
    sent = await asyncio.gather(
        *(layer.group_send(group, message) for group in groups), return_exceptions=True
    )
    for outcome in sent:
        if isinstance(outcome, BaseException):
            raise outcome


class _Publisher(_Queued):
    """Publishes queued pushes to Redis from a thread of its own (see the module's
    docstring): all that is queued when it wakes goes in one pipeline."""

    def __init__(self, url: str, prefix: str, layer: RedisPubSubChannelLayer):
        super().__init__()
        self.url = url
        self.prefix = prefix
        self.layer = layer
        self.pid = os.getpid()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        thread = threading.Thread(target=self._run, name="statehouse-publish", daemon=True)
        thread.start()

    def put(self, groups: list[str], message: dict[str, Any]) -> None:
        self.queued()
        self.queue.put((groups, message))

    def group_channel(self, group: str) -> str:
        """The Redis channel channels_redis's pub/sub layer subscribes a group's members
        to (RedisPubSubLoopLayer._get_group_channel_name)."""
        return f"{self.prefix}__group__{group}"

    def _run(self) -> None:
        client = redis.Redis.from_url(
            self.url, socket_timeout=PUBLISH_TIMEOUT_S, socket_connect_timeout=PUBLISH_TIMEOUT_S
        )
        while True:
            batch = [self.queue.get()]
            while True:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self.may_send():
                    pipeline = client.pipeline(transaction=False)
                    for groups, message in batch:
                        data = self.layer.serialize(message)
                        for group in groups:
                            pipeline.publish(self.group_channel(group), data)
                    pipeline.execute()
                    _outage.recovered()
            except Exception as exc:
                self.failed(exc)
            finally:
                self.done(len(batch))


_publisher: _Publisher | None = None


def _redis_publisher() -> _Publisher | None:
    """This process's publisher when the channel layer is channels_redis's pub/sub layer
    on one Redis server; None otherwise (the layer's own group_send is used)."""
    global _publisher
    layer = get_channel_layer()
    if not isinstance(layer, RedisPubSubChannelLayer):
        return None
    config = settings.CHANNEL_LAYERS["default"].get("CONFIG", {})
    hosts = config.get("hosts") or []
    if len(hosts) != 1 or not isinstance(hosts[0], str):
        return None
    with _lock:
        # A forked process (a Celery pool's child) starts a thread of its own.
        if _publisher is None or _publisher.pid != os.getpid() or _publisher.layer is not layer:
            _publisher = _Publisher(hosts[0], config.get("prefix", "asgi"), layer)
        return _publisher


def set_server_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called by the ASGI server (lifespan, consumers) with the loop consumers live on."""
    global _server_loop
    _server_loop = loop


def _background() -> asyncio.AbstractEventLoop:
    global _background_loop
    with _lock:
        if _background_loop is None or _background_loop.is_closed():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="statehouse-push", daemon=True)
            thread.start()
            _background_loop = loop
        return _background_loop


def _sender() -> "_Sender | _Publisher":
    publisher = _redis_publisher()
    if publisher is not None:
        return publisher
    loop = _server_loop
    if loop is None or loop.is_closed() or not loop.is_running():
        loop = _background()
    with _lock:
        sender = _senders.get(loop)
        if sender is None:
            for stale in [known for known in _senders if known.is_closed()]:
                del _senders[stale]
            sender = _senders[loop] = _Sender(loop)
    return sender


def group_message(payload: dict[str, Any]) -> dict[str, Any]:
    """The Channels message consumers receive: ``type`` routes to ``live_event``."""
    return {"type": "live.event", "event": payload}


def push(groups: list[str], payload: dict[str, Any]) -> None:
    """Queue ``payload`` for every group; returns at once."""
    try:
        _sender().put(list(groups), group_message(payload))
    except Exception:
        logger.exception("could not queue a live push to %s", groups)


def flush(timeout: float = 5.0) -> bool:
    """Wait until queued pushes are sent (tests, shutdown). True if all were sent."""
    with _lock:
        senders = [*_senders.values(), *([_publisher] if _publisher else [])]
    return all(sender.idle.wait(timeout) for sender in senders)
