"""core.asgi_handler's request path: one hop per request to a thread of its own, kept for
the next request; streamed bodies still cancelled when the client leaves. The first tests
pin what it relies on in Django and asgiref (they fail when an upgrade changes it: then
re-check the handler against its docstring, and run bench/api.py)."""

import asyncio
import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import asgiref
from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from core.asgi_handler import RequestThreads, SyncChainASGIHandler
from tests.asgi import http_scope

SEEN: list[tuple[str, int]] = []
GATE = {"first": threading.Event(), "second": threading.Event()}
STREAM: dict = {}
BODIES: list[bytes] = []


def recording_middleware(get_response):
    def middleware(request):
        SEEN.append(("middleware", threading.get_ident()))
        return get_response(request)

    return middleware


def sync_view(request):
    SEEN.append(("view", threading.get_ident()))
    return HttpResponse("sync")


def first_view(request):
    """Waits (on its thread) for the second request's view: only possible if the two
    requests have threads of their own."""
    SEEN.append(("first", threading.get_ident()))
    GATE["first"].set()
    assert GATE["second"].wait(10), "the second request never ran beside the first"
    return HttpResponse("first")


def second_view(request):
    assert GATE["first"].wait(10)
    SEEN.append(("second", threading.get_ident()))
    GATE["second"].set()
    return HttpResponse("second")


async def endless_stream(request):
    async def body():
        try:
            while True:
                yield b"part"
                await asyncio.sleep(0.01)
        finally:
            STREAM["closed"].set()

    return StreamingHttpResponse(body())


def _record_late(done):
    SEEN.append(("late", threading.get_ident()))
    done.set()


async def spawning_stream(request):
    """A stream whose end leaves behind a task that makes a thread-sensitive call after
    the request ended (as a stream's on_disconnect=cancel does)."""
    done = threading.Event()
    STREAM["late"] = done

    async def later():
        await asyncio.sleep(0.05)
        await sync_to_async(_record_late)(done)

    async def body():
        try:
            yield b"spawned"
        finally:
            STREAM["task"] = asyncio.ensure_future(later())

    return StreamingHttpResponse(body())


def body_view(request):
    BODIES.append(request.body)
    return HttpResponse("ok")


urlpatterns = [
    path("body", body_view),
    path("sync", sync_view),
    path("first", first_view),
    path("second", second_view),
    path("stream", endless_stream),
    path("spawn", spawning_stream),
]
MIDDLEWARE = [f"{__name__}.recording_middleware"]


def scope(path_: str) -> dict:
    return http_scope(path_)


async def get(handler, path_: str) -> tuple[int, bytes]:
    communicator = ApplicationCommunicator(handler, scope(path_))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=10)
    body = await communicator.receive_output(timeout=10)
    await communicator.wait(timeout=10)
    return start["status"], body["body"]


class CountingExecutor(ThreadPoolExecutor):
    """A request thread that counts the hops sent to it."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.hops = 0

    def submit(self, *args, **kwargs):
        self.hops += 1
        return super().submit(*args, **kwargs)


class CountingThreads(RequestThreads):
    def __init__(self):
        super().__init__()
        self.made: list[CountingExecutor] = []

    def lend(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        executor = CountingExecutor()
        self.made.append(executor)
        return executor


def handler_with(threads: RequestThreads) -> SyncChainASGIHandler:
    handler = SyncChainASGIHandler()
    handler.threads = threads
    return handler


# --- what the handler relies on -----------------------------------------------------------


def test_django_awaits_handle_inside_a_thread_sensitive_context():
    source = inspect.getsource(ASGIHandler.__call__)
    assert "async with ThreadSensitiveContext():" in source
    assert "await self.handle(scope, receive, send)" in source
    signatures = {
        "handle": ["self", "scope", "receive", "send"],
        "read_body": ["self", "receive"],
        "create_request": ["self", "scope", "body_file"],
        "send_response": ["self", "response", "send"],
        "listen_for_disconnect": ["self", "receive"],
    }
    for name, parameters in signatures.items():
        assert list(inspect.signature(getattr(ASGIHandler, name)).parameters) == parameters


async def test_asgiref_sends_a_contexts_calls_to_the_executor_it_is_mapped_to():
    assert asgiref.__version__.split(".")[:2] == ["3", "13"], (
        "core.asgi_handler was checked on asgiref 3.13: re-check what its docstring says "
        "it relies on, run bench/api.py, then update this test"
    )
    executor = ThreadPoolExecutor(max_workers=1)
    try:
        async with ThreadSensitiveContext() as context:
            SyncToAsync.context_to_thread_executor[context] = executor
            first = await sync_to_async(threading.get_ident)()
            second = await sync_to_async(threading.get_ident)()
            SyncToAsync.context_to_thread_executor.pop(context)
        # The executor's one thread ran both calls, and the context's exit (which shuts
        # down the executor it finds) left it alone: it still runs work.
        assert first == second == executor.submit(threading.get_ident).result(timeout=5)
    finally:
        executor.shutdown()


# --- what it does -----------------------------------------------------------------------


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_a_request_is_one_hop_to_one_thread_with_its_signals():
    threads = CountingThreads()
    handler = handler_with(threads)
    signal_threads = []

    def started(**kwargs):
        signal_threads.append(("started", threading.get_ident()))

    def finished(**kwargs):
        signal_threads.append(("finished", threading.get_ident()))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    SEEN.clear()
    try:
        assert await get(handler, "/sync") == (200, b"sync")
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)

    (executor,) = threads.made
    assert executor.hops == 1  # Django's own handler: three, plus a new thread
    assert [what for what, _ in signal_threads] == ["started", "finished"]
    idents = {ident for _, ident in SEEN + signal_threads}
    assert len(idents) == 1
    assert idents != {threading.get_ident()}  # not the event loop's thread


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_the_thread_is_kept_for_the_next_request():
    threads = CountingThreads()
    handler = handler_with(threads)
    SEEN.clear()

    for _ in range(3):
        assert await get(handler, "/sync") == (200, b"sync")

    assert len(threads.made) == 1
    assert threads.idle() == 1
    assert len({ident for _, ident in SEEN}) == 1


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_requests_at_the_same_time_each_have_a_thread():
    threads = CountingThreads()
    handler = handler_with(threads)
    SEEN.clear()
    for gate in GATE.values():
        gate.clear()

    answers = await asyncio.gather(get(handler, "/first"), get(handler, "/second"))

    assert answers == [(200, b"first"), (200, b"second")]
    seen = dict(SEEN)
    assert seen["first"] != seen["second"]
    assert len(threads.made) == 2
    assert threads.idle() == 2


def test_past_keep_an_executor_given_back_is_shut_down():
    threads = RequestThreads(keep=1)
    kept, extra = threads.lend(), threads.lend()
    assert kept is not extra

    threads.give_back(kept)
    threads.give_back(extra)

    assert threads.idle() == 1
    assert threads.lend() is kept
    assert extra._shutdown


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_a_streamed_body_stops_when_the_client_disconnects():
    handler = handler_with(RequestThreads())
    STREAM["closed"] = asyncio.Event()
    finished = []

    def on_finished(**kwargs):
        finished.append(threading.get_ident())

    signals.request_finished.connect(on_finished)
    try:
        communicator = ApplicationCommunicator(handler, scope("/stream"))
        await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
        start = await communicator.receive_output(timeout=10)
        assert start["status"] == 200
        part = await communicator.receive_output(timeout=10)
        assert part["body"] == b"part" and part["more_body"]

        await communicator.send_input({"type": "http.disconnect"})

        await asyncio.wait_for(STREAM["closed"].wait(), 10)
        await communicator.wait(timeout=10)
    finally:
        signals.request_finished.disconnect(on_finished)
    assert len(finished) == 1  # the response was closed: request_finished ran


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_a_task_left_by_a_request_can_still_call_sync_code_after_it():
    handler = handler_with(RequestThreads())
    SEEN.clear()

    communicator = ApplicationCommunicator(handler, scope("/spawn"))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    assert (await communicator.receive_output(timeout=10))["status"] == 200
    assert (await communicator.receive_output(timeout=10))["body"] == b"spawned"
    await communicator.receive_output(timeout=10)  # the stream's end
    await communicator.wait(timeout=10)
    assert not STREAM["task"].done()  # the request is over, the task is not

    await asyncio.wait_for(STREAM["task"], 10)

    assert STREAM["late"].is_set()
    assert [what for what, _ in SEEN].count("late") == 1


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_a_body_in_several_messages_is_read_whole():
    handler = handler_with(RequestThreads())
    BODIES.clear()

    communicator = ApplicationCommunicator(handler, {**scope("/body"), "method": "POST"})
    await communicator.send_input({"type": "http.request", "body": b"ab", "more_body": True})
    await communicator.send_input({"type": "http.request", "body": b"cd", "more_body": False})
    start = await communicator.receive_output(timeout=10)
    await communicator.receive_output(timeout=10)
    await communicator.wait(timeout=10)

    assert start["status"] == 200
    assert BODIES == [b"abcd"]
