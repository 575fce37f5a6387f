"""core.asgi_handler reaches into Django's request handling: these tests fail when a
Django upgrade changes what it relies on (then re-check the handler, and run
bench/api.py)."""

import asyncio
import inspect
import threading
import traceback

import django
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse
from django.test import override_settings
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

from core.asgi_handler import SyncChainASGIHandler
from tests.asgi import http_get

SEEN: list[tuple[str, int]] = []
STACKS: list[traceback.StackSummary] = []


class MixinMiddleware(MiddlewareMixin):
    """A built-in style middleware: the stock async chain hops for each of its halves."""

    def process_request(self, request):
        SEEN.append(("mixin request", threading.get_ident()))

    def process_response(self, request, response):
        SEEN.append(("mixin response", threading.get_ident()))
        return response


def outer_middleware(get_response):
    """A sync-only middleware, outside the other one."""

    def outer(request):
        SEEN.append(("outer request", threading.get_ident()))
        response = get_response(request)
        SEEN.append(("outer response", threading.get_ident()))
        return response

    return outer


def sync_view(request):
    SEEN.append(("view", threading.get_ident()))
    STACKS.append(traceback.extract_stack())
    return HttpResponse("sync")


async def async_view(request):
    SEEN.append(("view", threading.get_ident()))
    SEEN.append(("view loop", id(asyncio.get_running_loop())))
    return HttpResponse("async")


urlpatterns = [path("sync", sync_view), path("async", async_view)]

MIDDLEWARE = [f"{__name__}.outer_middleware", f"{__name__}.MixinMiddleware"]


async def get(handler, path_: str) -> tuple[int, bytes]:
    status, _, body = await http_get(handler, path_)
    return status, body


def test_the_django_version_is_the_one_the_handler_was_checked_on():
    assert django.VERSION[:2] == (5, 2), (
        "core.asgi_handler was checked on Django 5.2: re-check what its docstring says it "
        "relies on against this version, run bench/api.py, then update this test"
    )


def test_django_builds_the_chain_once_with_load_middleware_is_async():
    calls = []

    class Recording(ASGIHandler):
        def load_middleware(self, *args, **kwargs):
            calls.append((args, kwargs))
            super().load_middleware(*args, **kwargs)

    Recording()

    assert calls == [((), {"is_async": True})]
    parameters = inspect.signature(BaseHandler.load_middleware).parameters
    assert list(parameters) == ["self", "is_async"]
    assert parameters["is_async"].default is False


def test_get_response_and_get_response_async_keep_their_signatures():
    assert list(inspect.signature(BaseHandler.get_response).parameters) == ["self", "request"]
    assert not inspect.iscoroutinefunction(BaseHandler.get_response)
    assert list(inspect.signature(BaseHandler.get_response_async).parameters) == [
        "self",
        "request",
    ]
    assert inspect.iscoroutinefunction(BaseHandler.get_response_async)
    assert inspect.iscoroutinefunction(ASGIHandler.run_get_response)
    # The override is the one ASGIHandler's request path awaits.
    assert "self.get_response_async(request)" in inspect.getsource(ASGIHandler.run_get_response)


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_every_middleware_and_a_sync_view_run_in_one_sync_thread_without_a_hop():
    handler = SyncChainASGIHandler()
    SEEN.clear()
    STACKS.clear()

    assert await get(handler, "/sync") == (200, b"sync")

    assert [where for where, _ in SEEN] == [
        "outer request",
        "mixin request",
        "view",
        "mixin response",
        "outer response",
    ]
    threads = {ident for _, ident in SEEN}
    assert len(threads) == 1
    assert threads != {threading.get_ident()}  # not the event loop's thread
    # From the outermost middleware down to the view, a plain call stack: no asgiref
    # frame (sync_to_async / async_to_sync) in between, that is no hop.
    names = [(frame.filename, frame.name) for frame in STACKS[0]]
    outer = names.index((__file__, "outer"))
    assert not [name for name in names[outer:] if "asgiref" in name[0]]


@override_settings(ROOT_URLCONF=__name__, MIDDLEWARE=MIDDLEWARE)
async def test_an_async_view_still_runs_on_the_event_loop():
    handler = SyncChainASGIHandler()
    SEEN.clear()

    assert await get(handler, "/async") == (200, b"async")

    seen = dict(SEEN)
    loop_thread = threading.get_ident()
    assert seen["view"] == loop_thread
    assert seen["view loop"] == id(asyncio.get_running_loop())
    middleware_threads = {ident for where, ident in SEEN if where.endswith(("request", "response"))}
    assert len(middleware_threads) == 1
    assert middleware_threads != {loop_thread}
