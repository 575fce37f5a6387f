"""ASGI entry point: HTTP through Django, WebSockets through Channels, lifespan for pushes."""

import asyncio
import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from core.asgi_handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from control_room.routing import websocket_urlpatterns  # noqa: E402
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
