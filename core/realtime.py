"""Live pushes to Channels groups.

``push()`` never blocks the caller and never raises: a push is a side effect that may be
lost (a page reconnecting re-reads the state; with Redis down pushes are dropped). Pushes
are queued and sent in order by one task on an event loop:

* the ASGI server's loop when one is registered (embedded mode: the in-memory channel
  layer only delivers to consumers on that loop, so worker threads must hand their pushes
  over to it instead of calling ``async_to_sync``);
* otherwise a background thread with its own loop (Celery worker processes, management
  commands), which keeps one connection pool to Redis instead of one per push.
"""

import asyncio
import logging
import threading
import time
from typing import Any

from channels.layers import get_channel_layer

from core.outages import OutageLog

logger = logging.getLogger(__name__)
# With the channel layer failing (Redis down), pushes are dropped (logged once a minute):
# the event log in the database is the truth, and pages re-read it when they reconnect.
_outage = OutageLog(logger, "live pushes dropped: the channel layer failed")
RETRY_AFTER_S = 1.0

_lock = threading.Lock()
_server_loop: asyncio.AbstractEventLoop | None = None
_senders: dict[asyncio.AbstractEventLoop, "_Sender"] = {}
_background_loop: asyncio.AbstractEventLoop | None = None


class _Sender:
    """Sends queued pushes one after another on its loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue | None = None
        self.idle = threading.Event()
        self.idle.set()
        self.pending = 0
        loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        self.queue = asyncio.Queue()
        self.loop.create_task(self._run())

    def put(self, groups: list[str], message: dict[str, Any]) -> None:
        with _lock:
            self.pending += 1
            self.idle.clear()
        self.loop.call_soon_threadsafe(self._enqueue, groups, message)

    def _enqueue(self, groups, message) -> None:
        if self.queue is None:  # _start has not run yet: it is next on the loop
            self.loop.call_soon(self._enqueue, groups, message)
            return
        self.queue.put_nowait((groups, message))

    async def _run(self) -> None:
        layer = get_channel_layer()
        skip_until = 0.0
        while True:
            groups, message = await self.queue.get()
            try:
                if layer is not None and time.monotonic() >= skip_until:
                    await _group_send(layer, groups, message)
                    _outage.recovered()
            except Exception as exc:
                # Redis down: drop this push and those of the next second without trying.
                skip_until = time.monotonic() + RETRY_AFTER_S
                _outage.failed(exc)
            finally:
                with _lock:
                    self.pending -= 1
                    if self.pending == 0:
                        self.idle.set()


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


def _sender() -> _Sender:
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
        senders = list(_senders.values())
    return all(sender.idle.wait(timeout) for sender in senders)
