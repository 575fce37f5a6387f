"""ASGI entry point: HTTP through Django, WebSockets through Channels, lifespan for pushes."""

import asyncio
import gc
import os

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)


class SyncChainASGIHandler(ASGIHandler):
    """Django's ASGI handler, running the middleware chain and the view in one hop to the
    sync thread per request.

    The stock handler builds an async middleware chain in which every built-in
    (``MiddlewareMixin``) middleware hops to the sync thread and back for its request and
    its response half, and WhiteNoise (sync only) switches modes once more: some fifteen
    thread hops for one request, 40% of the CPU of a small API call (``bench/api.py``).
    Here the chain is the sync one, as under WSGI. Async views (the API's wait, join and
    stream endpoints) are still awaited on the server's event loop (Django adapts them),
    and streaming bodies are sent by the ASGI handler as before.
    """

    def load_middleware(self, is_async=False):
        super().load_middleware(is_async=False)  # the sync chain, built once

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from core import realtime  # noqa: E402


async def lifespan(scope, receive, send):
    """Record the server's event loop so that worker threads can push onto it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            realtime.set_server_loop(asyncio.get_running_loop())
            # What is loaded by now lives as long as the process: keep it out of the
            # garbage collector's full passes, which otherwise stall the loop for 100 ms
            # and more (seen as the tail of live push latency, bench/live.py).
            gc.freeze()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            realtime.set_server_loop(None)
            await send({"type": "lifespan.shutdown.complete"})
            return


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
        "lifespan": lifespan,
    }
)
