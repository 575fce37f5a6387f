"""Live feeds over WebSockets.

A feed is one Channels group (``session.<id>``, ``thread.<id>``, ``run.<id>``,
``dashboard``). A socket without a logged-in user is closed; a user may subscribe only to
what they may see, checked when subscribing and again before each event is forwarded, so
a user who logs out or loses access stops receiving.

"Logged in" is read again from the session store for every event: the session object
Channels keeps in the scope caches what it loaded when the socket opened, so it would not
notice a logout (which deletes the session) made through another request.

An event pushed to a group reaches all its sockets at once; their checks are batched
into one call in a worker thread (:class:`AccessChecks`), where a session, a user, and
whether that user may see an object, are read once for all the sockets that ask the same
(control_room.socket_auth).
"""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from control_room.pages import is_staff
from control_room.socket_auth import BatchCache, current_user
from core import realtime
from sessions_app.services import visible_sessions
from threads_app.services import visible_runs, visible_threads

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_GONE = 4404

ALLOWED = 0


class AccessChecks:
    """Batches the per-event access checks of the sockets of one event loop.

    A socket awaiting :meth:`check` joins the batch that runs at the loop's next turn;
    the batch runs in one worker thread (not the thread that serves sync views), so a
    hundred sockets of one feed cost one thread hop, their session reads, and one read
    of each distinct user and of each distinct (feed, user) permission.
    """

    def __init__(self):
        self.pending: list[tuple[FeedConsumer, dict, asyncio.Future]] = []

    async def check(self, consumer: "FeedConsumer", event: dict) -> int:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((consumer, event, future))
        if len(self.pending) == 1:
            asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the other sockets woken by this event join in
        batch, self.pending = self.pending, []
        try:
            verdicts = await database_sync_to_async(check_batch, thread_sensitive=False)(
                [(consumer, event) for consumer, event, _ in batch]
            )
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), verdict in zip(batch, verdicts, strict=True):
            if not future.done():
                future.set_result(verdict)


def check_batch(batch: list[tuple["FeedConsumer", dict]]) -> list[int]:
    cache = BatchCache()
    cache.prefetch_sessions(
        getattr(consumer.scope["session"], "session_key", None)
        for consumer, _ in batch
        if "session" in consumer.scope
    )
    return [consumer.check_event(event, cache) for consumer, event in batch]


_access_checks: dict[asyncio.AbstractEventLoop, AccessChecks] = {}


def access_checks() -> AccessChecks:
    loop = asyncio.get_running_loop()
    checks = _access_checks.get(loop)
    if checks is None:
        for stale in [known for known in _access_checks if known.is_closed()]:
            del _access_checks[stale]
        checks = _access_checks[loop] = AccessChecks()
    return checks


class FeedConsumer(AsyncJsonWebsocketConsumer):
    group_prefix = ""

    def group_name(self) -> str:
        return f"{self.group_prefix}.{self.object_id()}"

    def object_id(self) -> str:
        return str(self.scope["url_route"]["kwargs"]["pk"])

    def can_view(self, user) -> bool:
        """Whether ``user`` may see this feed's object (runs in a worker thread)."""
        raise NotImplementedError

    async def connect(self):
        realtime.set_server_loop(asyncio.get_running_loop())
        self.group = None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if not await database_sync_to_async(self.can_view)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = self.group_name()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "subscribed", "feed": self.group})

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_event(self, message):
        """An event pushed by core.realtime: forward it if the user may still see it."""
        if self.group is None:
            return  # closing
        event = message["event"]
        verdict = await access_checks().check(self, event)
        if verdict != ALLOWED:
            await self._close(verdict)
            return
        await self.send_json(event)
        if self.is_own_deletion(event):
            await self._close(CLOSE_GONE)

    async def _close(self, code: int) -> None:
        await self.disconnect(code)
        await self.close(code=code)

    def is_own_deletion(self, event: dict) -> bool:
        return (
            event.get("type") == "state.changed"
            and event.get("kind") == "deleted"
            and event.get("entity") == self.group_prefix
            and event.get("id") == self.object_id()
        )

    def check_event(self, event: dict, cache: BatchCache | None = None) -> int:
        """ALLOWED, or the close code to end the socket with (runs in a worker thread).

        ``cache`` is shared by the checks of one batch.
        """
        cache = cache or BatchCache()
        user = current_user(self.scope, cache)
        if not user.is_authenticated or not user.is_active:
            return CLOSE_UNAUTHENTICATED
        self.scope["user"] = user
        if self.is_own_deletion(event):
            # The object is gone, so can_view() cannot say; whoever was subscribed to it
            # (access was checked with the previous event) hears that it was deleted.
            return ALLOWED
        key = (type(self), self.object_id(), user.pk)
        if key not in cache.permissions:
            cache.permissions[key] = self.can_view(user)
        return ALLOWED if cache.permissions[key] else CLOSE_FORBIDDEN


class DashboardConsumer(FeedConsumer):
    """Every change, for staff."""

    def group_name(self) -> str:
        return "dashboard"

    def object_id(self) -> str:
        return ""

    def can_view(self, user) -> bool:
        return is_staff(user)


class SessionConsumer(FeedConsumer):
    """A session, its threads and its usage: for staff and the session's owner."""

    group_prefix = "session"

    def can_view(self, user) -> bool:
        return user.is_active and visible_sessions(user).filter(pk=self.object_id()).exists()


class ThreadConsumer(FeedConsumer):
    """A thread, its runs' state changes and their streamed events (the runtime pushes a
    run's events to its thread's group too): for staff and the session's owner."""

    group_prefix = "thread"

    def can_view(self, user) -> bool:
        return user.is_active and visible_threads(user).filter(pk=self.object_id()).exists()


class RunConsumer(FeedConsumer):
    """One run's state changes and streamed events."""

    group_prefix = "run"

    def can_view(self, user) -> bool:
        return user.is_active and visible_runs(user).filter(pk=self.object_id()).exists()
