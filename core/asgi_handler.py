"""A speed-up that reaches into Django's internals: the ASGI handler with the sync
middleware chain, one hop per request, on threads kept from one request to the next.

Why: Django's stock ASGI handler builds an async middleware chain, in which every
built-in (``MiddlewareMixin``) middleware hops to the sync thread and back for its
request half and its response half, and WhiteNoise (sync only) switches modes once
more: some fifteen thread hops for one request, 40% of the CPU of a small API call.
Around the chain, each request then still paid for three more hops (the
``request_started`` signal, the chain, ``response.close()`` with ``request_finished``),
a task listening for the client's disconnect, and a thread of its own: asgiref's
``ThreadSensitiveContext`` starts a new thread for each request's sync code and a second
one to join it at the end (some 15% of the CPU of ``GET /api/ok``, in process).

:class:`SyncChainASGIHandler` builds the sync chain, as under WSGI, and runs the
``request_started`` signal, the chain, the view and, for a response that is not
streamed, ``response.close()`` (``request_finished``: the database connection goes back)
in one hop to the request's sync thread; the response is then sent from the event loop.
That thread is one of :data:`request_threads`, single-thread executors lent to one
request at a time and kept for the next (a WSGI server's threads are reused the same
way), so a request still has a thread to itself, and every ``thread_sensitive`` call of
the request (an async view's ``sync_to_async``) runs on it. Async views (the API's wait,
join and stream endpoints) are still awaited on the server's event loop (Django's sync
chain calls them through ``async_to_sync``, which runs them on the loop the hop came
from). A streamed body is sent as Django sends it, with a task listening for the client's
disconnect, which cancels the sending (a stream's ``on_disconnect=cancel`` relies on it),
then ``response.close()`` in a second hop. ``bench/api.py`` measures it: its lines "api
floor" (an unknown page: middleware and URL resolver only), "api cheapest route" and "api
CPU per state read" (run it before and after touching this module).

What it relies on (pinned by ``tests/core/test_asgi_handler.py``, which fails when a
Django or asgiref upgrade changes them; checked on Django 5.2, asgiref 3.13):

- ``ASGIHandler.__init__`` builds the chain by calling ``load_middleware(is_async=True)``
  once; ``BaseHandler.load_middleware`` with ``is_async=False`` builds a sync
  ``_middleware_chain`` that calls async views through ``async_to_sync``;
  ``BaseHandler.get_response(request)`` runs that chain;
- ``ASGIHandler.handle(scope, receive, send)`` is what ``ASGIHandler.__call__`` awaits
  for an HTTP request inside a ``ThreadSensitiveContext``, and its helpers
  ``read_body(receive)``, ``create_request(scope, body_file)``,
  ``send_response(response, send)`` and ``listen_for_disconnect(receive)`` keep their
  signatures;
- asgiref's ``SyncToAsync.context_to_thread_executor`` maps a ``ThreadSensitiveContext``
  to the executor its ``thread_sensitive`` calls go to, and the context creates one
  (a new thread) only when it has none, and shuts down at its exit only the one it finds
  there.
"""

import asyncio
import contextlib
import io
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse
from django.urls import set_script_prefix


class RequestThreads:
    """Single-thread executors, each lent to one request at a time and kept for the next
    one (at most ``keep`` idle; past that an executor given back is shut down)."""

    def __init__(self, keep: int = 64):
        self.keep = keep
        self._idle: list[ThreadPoolExecutor] = []
        self._lock = threading.Lock()

    def lend(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="statehouse-request")

    def give_back(self, executor: ThreadPoolExecutor) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(executor)
                return
        executor.shutdown(wait=False)

    def idle(self) -> int:
        return len(self._idle)


# The process's request threads (one per request served at once, kept for the next).
request_threads = RequestThreads()


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware chain and the view in one hop per
    request, to a sync thread kept from one request to the next."""

    threads = request_threads

    def __init__(self):
        super().__init__()
        # Built once: asgiref's wrapper costs as much to make as to call.
        self._respond_in_thread = sync_to_async(self._respond, thread_sensitive=True)

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)  # the sync chain, built once

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        async with ThreadSensitiveContext() as context:
            # This request's thread_sensitive calls go to a kept thread, not a new one;
            # taken out again before the context's exit, which would shut it down. (An
            # enclosing ThreadSensitiveContext, if any, decides instead: then this entry
            # is never looked at.)
            executor = self.threads.lend()
            SyncToAsync.context_to_thread_executor[context] = executor
            try:
                await self.handle(scope, receive, send)
            finally:
                SyncToAsync.context_to_thread_executor.pop(context, None)
                self.threads.give_back(executor)

    async def handle(self, scope, receive, send):
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        response = await self._respond_in_thread(scope, body_file)
        if not response.streaming:
            # Closed already, in the hop (request_finished has run): only the bytes to send.
            await self.send_response(response, send)
            return
        try:
            await self._send_stream(response, receive, send)
        finally:
            await sync_to_async(response.close, thread_sensitive=True)()
            body_file.close()

    async def read_body(self, receive):
        """The body in memory when it came in one message (a small body: most API
        requests, and every GET); a longer one as Django reads it (to a file past
        FILE_UPLOAD_MAX_MEMORY_SIZE)."""
        first = await receive()
        if first["type"] == "http.request" and not first.get("more_body", False):
            return io.BytesIO(first.get("body", b""))
        pending = [first]

        async def replay():
            return pending.pop() if pending else await receive()

        return await super().read_body(replay)

    def _respond(self, scope, body_file):
        """On the request's sync thread: the request, its response and, for one that is
        not streamed, its close (what Django's handle does in three hops)."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            response._handler_class = self.__class__
            # As Django: larger chunks for files (the ASGI server chunks them itself).
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        if not response.streaming:
            body_file.close()
            response.close()
        return response

    async def _send_stream(self, response, receive, send):
        """Send a streamed body as Django does: cancelled when the client disconnects
        (the body's iterator is closed then)."""

        async def send_body():
            with contextlib.suppress(asyncio.CancelledError):  # the client went away
                await self.send_response(response, send)

        tasks = [
            # First, as in Django: it raises nothing that would stop the sending's cancel.
            asyncio.create_task(self.listen_for_disconnect(receive)),
            asyncio.create_task(send_body()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            if task.done():
                with contextlib.suppress(RequestAborted, asyncio.CancelledError):
                    task.result()  # RequestAborted: the client disconnected
            else:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
